package policy

import "strings"

// appNames lists the canonical names of the L7 protocols the datapath
// detects.
func appNames() []string {
	return []string{
		"AMQP", "Cassandra", "Couchbase", "DHCP", "DNS", "Elasticsearch", "etcd",
		"gRPC", "HTTP", "Kafka", "Memcached", "MongoDB", "MySQL", "NATS", "NTP",
		"PostgreSQL", "RabbitMQ", "Redis", "SSH", "TLS", "ZooKeeper",
	}
}

// CanonicalApplication returns the canonical name of a detected L7
// protocol, accepting any case and common aliases ("ssl" is TLS).
func CanonicalApplication(name string) (string, bool) {
	switch l := strings.ToLower(strings.TrimSpace(name)); l {
	case "ssl", "https", "tls":
		return "TLS", true
	case "grpc":
		return "gRPC", true
	case "postgres", "postgresql":
		return "PostgreSQL", true
	case "mongo", "mongodb":
		return "MongoDB", true
	case "elastic", "elasticsearch":
		return "Elasticsearch", true
	case "amqp", "cassandra", "couchbase", "dhcp", "dns", "etcd", "http", "kafka",
		"memcached", "mysql", "nats", "ntp", "rabbitmq", "redis", "ssh", "zookeeper":
		for _, a := range appNames() {
			if strings.ToLower(a) == l {
				return a, true
			}
		}
	}
	return "", false
}

// Applications lists the canonical L7 protocol names.
func Applications() []string { return appNames() }
