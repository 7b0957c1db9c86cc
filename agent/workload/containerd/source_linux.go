//go:build linux

package containerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/palisade-sec/palisade/agent/workload"
)

// namespaceHeader carries the containerd namespace of a call.
const namespaceHeader = "containerd-namespace"

// Source watches the containers of one containerd namespace.
type Source struct {
	cfg     Config
	log     *slog.Logger
	resolve func(host workload.HostLinks, netnsPath string) ([]workload.Interface, error)
}

// New returns a source; it connects when run.
func New(cfg Config, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, log: log, resolve: workload.HostLinks.Resolve}, nil
}

// clients are the containerd services the source uses.
type clients struct {
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
	images     imagesapi.ImagesClient
	events     eventsapi.EventsClient
}

// Run reports every running workload as Added on the first listing, then
// changes as containerd reports events and at every resync, until ctx is
// done. While containerd cannot be reached the last list is kept. A
// workload whose namespace cannot be read is absent until it can.
func (s *Source) Run(ctx context.Context, fn func(workload.Change)) error {
	// Reconnect soon after containerd restarts, not after gRPC's default
	// backoff of up to two minutes.
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = s.cfg.RetryInterval, max(s.cfg.RetryInterval, 5*time.Second)
	conn, err := grpc.NewClient("unix://"+s.cfg.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: s.cfg.CallTimeout}))
	if err != nil {
		return fmt.Errorf("containerd: connect %s: %w", s.cfg.Socket, err)
	}
	defer conn.Close()
	cl := clients{
		containers: containersapi.NewContainersClient(conn),
		tasks:      tasksapi.NewTasksClient(conn),
		images:     imagesapi.NewImagesClient(conn),
		events:     eventsapi.NewEventsClient(conn),
	}
	ctx = metadata.AppendToOutgoingContext(ctx, namespaceHeader, s.cfg.Namespace)
	ctx, cancel := context.WithCancel(ctx)
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.follow(ctx, cl.events, kick)
	}()
	defer wg.Wait()
	defer cancel()

	known := map[string]workload.Endpoint{}
	t := time.NewTicker(s.cfg.Resync)
	defer t.Stop()
	failing := false // logged once per outage
	for {
		cur, err := s.scan(ctx, cl)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.log.Warn("containerd listing failed; keeping the previous workloads", "socket", s.cfg.Socket, "err", err)
			}
			failing = true
		case err == nil:
			if failing {
				s.log.Info("containerd listing works again", "socket", s.cfg.Socket)
			}
			failing = false
			for _, c := range workload.Diff(known, cur) {
				if c.Kind != workload.Removed {
					s.log.Info("container workload "+c.Kind.String(), "workload", c.Endpoint.ID(), "labels", c.Endpoint.Labels,
						"images", imageList(c.Endpoint.Images), "cgroup", c.Endpoint.Cgroup)
				}
				fn(c)
			}
			known = cur
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-kick:
		}
	}
}

// follow subscribes to containerd's events and signals kick after each
// relevant one, and after every (re)subscription since events may have
// been missed in between.
func (s *Source) follow(ctx context.Context, ev eventsapi.EventsClient, kick chan<- struct{}) {
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		err := s.subscribe(ctx, ev, signal)
		if ctx.Err() != nil {
			return
		}
		s.log.Debug("containerd event stream broken; subscribing again", "socket", s.cfg.Socket, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.RetryInterval):
		}
	}
}

func (s *Source) subscribe(ctx context.Context, ev eventsapi.EventsClient, signal func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ev.Subscribe(ctx, &eventsapi.SubscribeRequest{})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	// Whatever happened before the subscription is picked up by listing
	// again; the periodic resync covers the short window until containerd
	// registers it.
	signal()
	for {
		env, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive event: %w", err)
		}
		if relevant(s.cfg.Namespace, env.GetNamespace(), env.GetTopic()) {
			s.log.Debug("containerd event", "topic", env.GetTopic())
			signal()
		}
	}
}

// scan lists the containers and their tasks and resolves the namespace of
// each running workload.
func (s *Source) scan(ctx context.Context, cl clients) (map[string]workload.Endpoint, error) {
	cs, err := s.list(ctx, cl)
	if err != nil {
		return nil, err
	}
	host := cmp.Or(s.cfg.HostNetns, "/proc/self/ns/net")
	out := map[string]workload.Endpoint{}
	running := group(s.cfg.Namespace, cs)
	if len(running) == 0 {
		return out, nil
	}
	links, err := workload.ListHostLinks(s.cfg.HostNetns)
	if err != nil {
		s.log.Debug("host namespace unreadable", "netns", s.cfg.HostNetns, "err", err)
		return out, nil
	}
	for id, c := range running {
		netns := filepath.Join(s.cfg.ProcRoot, strconv.FormatUint(uint64(c.Pid), 10), "ns", "net")
		if sameFile(netns, host) {
			// A host-network pod: its interfaces are the node's, not its own.
			s.log.Debug("workload in the host network namespace skipped", "workload", id)
			continue
		}
		ifs, err := s.resolve(links, netns)
		if err != nil {
			s.log.Debug("workload namespace unreadable", "workload", id, "netns", netns, "err", err)
			continue
		}
		ep := c.Endpoint
		ep.Interfaces = ifs
		out[id] = ep
	}
	return out, nil
}

// sameFile says whether paths a and b name the same file (for namespace
// files: the same namespace); false if either cannot be read.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// list reads the containers, the running tasks and the image digests.
func (s *Source) list(ctx context.Context, cl clients) ([]container, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	cr, err := cl.containers.List(cctx, &containersapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	tr, err := cl.tasks.List(cctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	running := map[string]uint32{}
	for _, t := range tr.GetTasks() {
		if t.GetStatus() == task.Status_RUNNING && t.GetPid() > 0 {
			running[t.GetID()] = t.GetPid() // a listed task is an init process, named as its container
		}
	}
	digests := map[string]string{}
	var out []container
	for _, c := range cr.GetContainers() {
		ct := container{ID: c.GetID(), Labels: c.GetLabels(), Image: c.GetImage(), Pid: running[c.GetID()]}
		if ct.Image != "" {
			d, ok := digests[ct.Image]
			if !ok {
				d, err = s.digest(cctx, cl.images, ct.Image)
				if err != nil {
					return nil, err
				}
				digests[ct.Image] = d
			}
			ct.Digest = d
		}
		if ct.Pid != 0 {
			ct.Cgroup = s.cgroupOf(ct.Pid, c.GetSpec().GetValue())
		}
		out = append(out, ct)
	}
	return out, nil
}

// digest is the target digest of image name; "" if containerd does not
// know the image any more.
func (s *Source) digest(ctx context.Context, images imagesapi.ImagesClient, name string) (string, error) {
	r, err := images.Get(ctx, &imagesapi.GetImageRequest{Name: name})
	if status.Code(err) == codes.NotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get image %s: %w", name, err)
	}
	return r.GetImage().GetTarget().GetDigest(), nil
}

// cgroupOf reads the task's cgroup v2 path from /proc, falling back to the
// spec's cgroupsPath.
func (s *Source) cgroupOf(pid uint32, spec []byte) string {
	data, err := os.ReadFile(filepath.Join(s.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err == nil {
		if p, perr := ParseProcCgroup(data); perr == nil {
			return p
		} else {
			err = perr
		}
	}
	if !errors.Is(err, os.ErrNotExist) {
		s.log.Debug("task cgroup unreadable", "pid", pid, "err", err)
	}
	return specCgroup(spec)
}
