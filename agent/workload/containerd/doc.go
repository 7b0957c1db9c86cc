// Package containerd discovers the workloads of a node from containerd's
// gRPC API. Containers carrying the CRI labels (io.kubernetes.pod.name,
// io.kubernetes.pod.namespace) are grouped into one workload per pod named
// after the pod, with the pod's labels, the images of its containers and
// their digests, the network namespace of its running tasks and their
// common cgroup v2 path; other containers are one workload each, named by
// container ID in the containerd namespace. The source follows containerd's
// event stream so workloads appear, change and disappear live, and lists
// everything again periodically in case an event was missed.
package containerd
