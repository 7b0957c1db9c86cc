//go:build linux

package containerd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/palisade-sec/palisade/agent/workload"
)

// fakeContainerd serves the four containerd services the source uses from
// an in-memory state, over a real gRPC server on a unix socket.
type fakeContainerd struct {
	ns string

	mu         sync.Mutex
	containers map[string]*containersapi.Container
	pids       map[string]uint32
	digests    map[string]string
	subs       map[int]chan *types.Envelope // open subscriptions
	nextSub    int
	subscribed chan struct{} // signalled on every new subscription
}

func (f *fakeContainerd) checkNS(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get(namespaceHeader); len(got) != 1 || got[0] != f.ns {
		return status.Errorf(codes.FailedPrecondition, "namespace header %v, want %s", got, f.ns)
	}
	return nil
}

type fakeContainers struct {
	containersapi.UnimplementedContainersServer
	*fakeContainerd
}

func (f fakeContainers) List(ctx context.Context, _ *containersapi.ListContainersRequest) (*containersapi.ListContainersResponse, error) {
	if err := f.checkNS(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &containersapi.ListContainersResponse{}
	for _, c := range f.containers {
		out.Containers = append(out.Containers, c)
	}
	return out, nil
}

type fakeTasks struct {
	tasksapi.UnimplementedTasksServer
	*fakeContainerd
}

func (f fakeTasks) List(ctx context.Context, _ *tasksapi.ListTasksRequest) (*tasksapi.ListTasksResponse, error) {
	if err := f.checkNS(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &tasksapi.ListTasksResponse{}
	for id, pid := range f.pids {
		out.Tasks = append(out.Tasks, &task.Process{ID: id, Pid: pid, Status: task.Status_RUNNING})
	}
	// A stopped task is listed too, and must not count.
	out.Tasks = append(out.Tasks, &task.Process{ID: "stopped", Pid: 7, Status: task.Status_STOPPED})
	return out, nil
}

type fakeImages struct {
	imagesapi.UnimplementedImagesServer
	*fakeContainerd
}

func (f fakeImages) Get(ctx context.Context, req *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	if err := f.checkNS(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.digests[req.GetName()]
	if !ok {
		return nil, status.Error(codes.NotFound, "image not found")
	}
	return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: req.GetName(), Target: &types.Descriptor{Digest: d}}}, nil
}

type fakeEvents struct {
	eventsapi.UnimplementedEventsServer
	*fakeContainerd
}

func (f fakeEvents) Subscribe(_ *eventsapi.SubscribeRequest, stream eventsapi.Events_SubscribeServer) error {
	ch := make(chan *types.Envelope, 16)
	f.mu.Lock()
	id := f.nextSub
	f.nextSub++
	f.subs[id] = ch
	f.mu.Unlock()
	f.subscribed <- struct{}{}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case env, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "stream closed")
			}
			if err := stream.Send(env); err != nil {
				return err
			}
		}
	}
}

// publish sends an event to every subscription.
func (f *fakeContainerd) publish(ns, topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ch := range f.subs {
		ch <- &types.Envelope{Namespace: ns, Topic: topic}
	}
}

// breakStreams ends every subscription with an error.
func (f *fakeContainerd) breakStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ch := range f.subs {
		close(ch)
		delete(f.subs, id)
	}
}

func (f *fakeContainerd) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// startFake serves a fake containerd for namespace k8s.io on a socket
// under dir.
func startFake(tb testing.TB, dir string) (*fakeContainerd, string) {
	tb.Helper()
	f := &fakeContainerd{ns: "k8s.io", containers: map[string]*containersapi.Container{}, pids: map[string]uint32{},
		digests: map[string]string{"shop/web:1": "sha256:web1", "shop/db:1": "sha256:db1"},
		subs:    map[int]chan *types.Envelope{}, subscribed: make(chan struct{}, 16)}
	sock := filepath.Join(dir, "containerd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer()
	containersapi.RegisterContainersServer(srv, fakeContainers{fakeContainerd: f})
	tasksapi.RegisterTasksServer(srv, fakeTasks{fakeContainerd: f})
	imagesapi.RegisterImagesServer(srv, fakeImages{fakeContainerd: f})
	eventsapi.RegisterEventsServer(srv, fakeEvents{fakeContainerd: f})
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	tb.Cleanup(func() { srv.Stop(); <-served })
	return f, sock
}

func TestSourceFollowsEvents(t *testing.T) {
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	dir := t.TempDir()
	f, sock := startFake(t, dir)

	proc := filepath.Join(dir, "proc")
	addPod := func(id, pod string, pid uint32) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(proc, fmt.Sprint(pid)), 0o755); err != nil {
			t.Fatal(err)
		}
		cg := "1:cpu:/x\n0::/k8s.io/" + id + "\n"
		if err := os.WriteFile(filepath.Join(proc, fmt.Sprint(pid), "cgroup"), []byte(cg), 0o644); err != nil {
			t.Fatal(err)
		}
		f.set(func() {
			f.containers[id] = &containersapi.Container{ID: id, Image: "shop/" + id + ":1",
				Labels: map[string]string{LabelPodName: pod, LabelPodNamespace: "shop", LabelContainerName: id, "app": id}}
			f.pids[id] = pid
		})
	}
	addPod("web", "web-1", 100)
	// A host-network pod: its namespace is this process's; never reported.
	addPod("hostnet", "hostnet-1", 300)
	if err := os.MkdirAll(filepath.Join(proc, "300", "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/ns/net", filepath.Join(proc, "300", "ns", "net")); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Socket = sock
	cfg.ProcRoot = proc
	cfg.Resync = time.Hour // changes must come from the events
	cfg.RetryInterval = 10 * time.Millisecond
	src, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var resolved []string
	var resolvedMu sync.Mutex
	src.resolve = func(_ workload.HostLinks, netns string) ([]workload.Interface, error) {
		resolvedMu.Lock()
		resolved = append(resolved, netns)
		resolvedMu.Unlock()
		pid := strings.Split(strings.TrimPrefix(netns, proc+"/"), "/")[0]
		return []workload.Interface{{Name: "eth0", Index: 2, Kind: "veth", HostIf: 10,
			Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0." + pid[:1] + "/24")}}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan workload.Change, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(c workload.Change) { changes <- c }) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func(kind workload.ChangeKind, id string) workload.Change {
		t.Helper()
		select {
		case c := <-changes:
			if c.Kind != kind || c.Endpoint.ID() != id {
				t.Fatalf("change %v %s, want %v %s", c.Kind, c.Endpoint.ID(), kind, id)
			}
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no %v %s", kind, id)
		}
		return workload.Change{}
	}
	waitSubscribed := func() {
		t.Helper()
		select {
		case <-f.subscribed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the source did not subscribe")
		}
	}

	c := next(workload.Added, "shop/web-1")
	want := []workload.Image{{Container: "web", Name: "shop/web:1", Digest: "sha256:web1"}}
	if fmt.Sprint(c.Endpoint.Images) != fmt.Sprint(want) || c.Endpoint.Cgroup != "/k8s.io/web" || c.Endpoint.Labels["app"] != "web" ||
		len(c.Endpoint.Interfaces) != 1 {
		t.Errorf("web: %+v", c.Endpoint)
	}
	waitSubscribed()

	// A container starts: an event brings it in.
	addPod("db", "db-1", 200)
	f.publish("k8s.io", "/tasks/start")
	c = next(workload.Added, "shop/db-1")
	if c.Endpoint.Images[0].Digest != "sha256:db1" || c.Endpoint.Cgroup != "/k8s.io/db" {
		t.Errorf("db: %+v", c.Endpoint)
	}

	// Its task exits: it goes.
	f.set(func() { delete(f.pids, "db") })
	f.publish("k8s.io", "/tasks/exit")
	next(workload.Removed, "shop/db-1")

	// The stream breaks; what changed meanwhile is found on resubscribing.
	f.set(func() { delete(f.pids, "web") })
	f.breakStreams()
	waitSubscribed()
	next(workload.Removed, "shop/web-1")

	resolvedMu.Lock()
	defer resolvedMu.Unlock()
	for _, p := range resolved {
		if p != filepath.Join(proc, "100", "ns", "net") && p != filepath.Join(proc, "200", "ns", "net") { // never 300
			t.Errorf("resolved namespace %s, want a task's /proc/PID/ns/net", p)
		}
	}
}

// BenchmarkScan measures one listing of 200 running containers (gRPC
// calls, /proc reads and grouping; the namespace reads are stubbed).
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	f, sock := startFake(b, dir)
	proc := filepath.Join(dir, "proc")
	for i := range 200 {
		id, pid := fmt.Sprintf("c%d", i), uint32(1000+i)
		os.MkdirAll(filepath.Join(proc, fmt.Sprint(pid)), 0o755)
		os.WriteFile(filepath.Join(proc, fmt.Sprint(pid), "cgroup"), []byte("0::/k8s.io/"+id+"\n"), 0o644)
		f.containers[id] = &containersapi.Container{ID: id, Image: "shop/web:1",
			Labels: map[string]string{LabelPodName: fmt.Sprintf("pod-%d", i/2), LabelPodNamespace: "shop", "app": "web"}}
		f.pids[id] = pid
	}
	cfg := DefaultConfig()
	cfg.Socket, cfg.ProcRoot = sock, proc
	src, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	src.resolve = func(workload.HostLinks, string) ([]workload.Interface, error) { return nil, nil }
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cl := clients{containers: containersapi.NewContainersClient(conn), tasks: tasksapi.NewTasksClient(conn),
		images: imagesapi.NewImagesClient(conn)}
	ctx := metadata.AppendToOutgoingContext(context.Background(), namespaceHeader, "k8s.io")
	b.ResetTimer()
	for b.Loop() {
		eps, err := src.scan(ctx, cl)
		if err != nil || len(eps) != 100 {
			b.Fatalf("scan: %d workloads, %v", len(eps), err)
		}
	}
}

// TestSourceWaitsForContainerd starts the source before containerd: the
// workloads come once containerd serves.
func TestSourceWaitsForContainerd(t *testing.T) {
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Socket = filepath.Join(dir, "containerd.sock")
	cfg.ProcRoot = filepath.Join(dir, "proc")
	cfg.Resync = time.Hour
	cfg.RetryInterval = 20 * time.Millisecond
	failed := make(chan struct{})
	var once sync.Once
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "containerd listing failed") {
			once.Do(func() { close(failed) })
		}
		return len(p), nil
	}), nil))
	src, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	src.resolve = func(workload.HostLinks, string) ([]workload.Interface, error) { return nil, nil }
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan workload.Change, 8)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(c workload.Change) { changes <- c }) }()
	defer func() {
		cancel()
		<-done
	}()

	select {
	case <-failed:
	case <-time.After(20 * time.Second):
		t.Fatalf("the source did not report containerd missing")
	}
	f, _ := startFake(t, dir)
	f.set(func() {
		f.containers["web"] = &containersapi.Container{ID: "web", Labels: map[string]string{LabelPodName: "web-1", LabelPodNamespace: "shop"}}
		f.pids["web"] = 100
	})
	select {
	case c := <-changes:
		if c.Kind != workload.Added || c.Endpoint.ID() != "shop/web-1" {
			t.Fatalf("change %v %s, want added shop/web-1", c.Kind, c.Endpoint.ID())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no workload after containerd started")
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }
