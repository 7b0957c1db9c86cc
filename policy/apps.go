package policy

import "strings"

// applications are the L7 protocols the datapath detects, by canonical name.
var applications = []string{
	"AMQP", "Cassandra", "Couchbase", "DHCP", "DNS", "Elasticsearch", "etcd",
	"gRPC", "HTTP", "Kafka", "Memcached", "MongoDB", "MySQL", "NATS", "NTP",
	"PostgreSQL", "RabbitMQ", "Redis", "SSH", "TLS", "ZooKeeper",
}

// appAliases maps other spellings (lower case) to canonical names.
func appAlias(lower string) string {
	switch lower {
	case "ssl", "https":
		return "TLS"
	case "grpc":
		return "gRPC"
	case "postgres":
		return "PostgreSQL"
	case "mongo":
		return "MongoDB"
	case "elastic":
		return "Elasticsearch"
	}
	return ""
}

// CanonicalApplication returns the canonical name of a detected L7
// protocol, accepting any case and common aliases ("ssl" is TLS).
func CanonicalApplication(name string) (string, bool) {
	l := strings.ToLower(strings.TrimSpace(name))
	if a := appAlias(l); a != "" {
		return a, true
	}
	for _, a := range applications {
		if strings.ToLower(a) == l {
			return a, true
		}
	}
	return "", false
}

// Applications lists the canonical L7 protocol names.
func Applications() []string { return append([]string(nil), applications...) }
