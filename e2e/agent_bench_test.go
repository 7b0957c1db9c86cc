package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
)

// BenchmarkAgentAtRest measures a real `palisade agent` at rest: enrolled
// with a real controller over QUIC, its eBPF programs loaded and its maps
// pinned, process control on, no workloads and no traffic. It reports the
// agent's resident memory (VmRSS) and the CPU it used per second over a
// quiet window, with the controller's own figures beside it as the
// baseline of the same run. Needs root.
func BenchmarkAgentAtRest(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the agent loads eBPF programs")
	}
	const window = 20 * time.Second
	dir := b.TempDir()
	ac := startAgentCluster(b, dir, "rest", "admin-password-1")
	c := ac.ctl
	wl := writeFile(b, dir, "workloads.yaml", "[]")
	pinDir := fmt.Sprintf("/sys/fs/bpf/pal-rest-%d", os.Getpid())
	b.Cleanup(func() { os.RemoveAll(pinDir) })
	agent := harness.Start(b, bin, dir, "agent", "agent", "--controller", ac.agentAddr, "--token", ac.token, "--node", "rest1",
		"--data-dir", filepath.Join(dir, "agent"), "--workloads", wl, "--pin-dir", pinDir)
	agent.WaitLog(regexp.MustCompile(`msg="agent ready"`), 1, 30*time.Second)
	// Let start-up work (enrolment, first table, GC of start-up garbage)
	// settle before the window.
	time.Sleep(5 * time.Second)

	ctrl := c.Pid()
	if ctrl == 0 {
		b.Fatalf("controller %s has no process", c.Name)
	}
	b.ResetTimer()
	var agentRSS, ctrlRSS, agentCPU, ctrlCPU float64
	for i := 0; i < b.N; i++ {
		a0, c0 := cpuTicks(b, agent.Pid()), cpuTicks(b, ctrl)
		time.Sleep(window)
		a1, c1 := cpuTicks(b, agent.Pid()), cpuTicks(b, ctrl)
		agentCPU += ticksToMs(a1-a0) / window.Seconds()
		ctrlCPU += ticksToMs(c1-c0) / window.Seconds()
		agentRSS += rssMiB(b, agent.Pid())
		ctrlRSS += rssMiB(b, ctrl)
	}
	n := float64(b.N)
	b.ReportMetric(agentRSS/n, "agent-rss-MiB")
	b.ReportMetric(agentCPU/n, "agent-cpu-ms/s")
	b.ReportMetric(ctrlRSS/n, "controller-rss-MiB")
	b.ReportMetric(ctrlCPU/n, "controller-cpu-ms/s")
}

// cpuTicks is a process's user plus system time in clock ticks.
func cpuTicks(b *testing.B, pid int) uint64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return ut + st
}

// ticksToMs converts clock ticks (USER_HZ, 100 on Linux) to milliseconds.
func ticksToMs(t uint64) float64 { return float64(t) * 10 }

// rssMiB is a process's resident set size in MiB.
func rssMiB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatalf("/proc/%d/status: %q", pid, line)
			}
			return kb / 1024
		}
	}
	b.Fatalf("/proc/%d/status has no VmRSS", pid)
	return 0
}
