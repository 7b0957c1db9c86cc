//go:build linux

package datapath

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// TestPrivilegedMigratesPinnedMaps opens a datapath over maps pinned by an
// "older release": a policy map whose values are narrower, a conntrack
// table of another capacity, and a fragments map whose recorded entry
// layout differs. Open must set them aside, carry the conntrack entries
// over, compile the policy afresh from the recorded verdicts, move the
// links, and keep enforcing: established connections survive, the policy
// in force is the one recorded. A migration cut short is finished by the
// next Open.
func TestPrivilegedMigratesPinnedMaps(t *testing.T) {
	skipUnlessRoot(t)
	n := newTestNet(t)
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	n.attach(t, d)
	defer func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	echoServer(t, n.b, "tcp4", "10.199.2.2:8080")
	echoServer(t, n.b, "tcp4", "10.199.2.2:9090")
	connects, passes := n.connects(t), n.passes(t)
	c, err := dial(t, n.a, "tcp4", "10.199.2.2:8080")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, "before"); err != nil {
		t.Fatalf("before: %v", err)
	}
	ctBefore, err := d.Conntrack()
	if err != nil || len(ctBefore) == 0 {
		t.Fatalf("conntrack before: %d entries, %v", len(ctBefore), err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// The older release: its policy values were 12 bytes, its conntrack
	// table was smaller, its fragments entries had another shape.
	oldPolicy, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: 16, ValueSize: 12,
		MaxEntries: cfg.PolicyMaxEntries, Flags: 1 /* BPF_F_NO_PREALLOC */})
	if err != nil {
		t.Fatalf("create old policy map: %v", err)
	}
	defer oldPolicy.Close()
	policyPin := filepath.Join(cfg.PinDir, "policy")
	if err := os.Remove(policyPin); err != nil {
		t.Fatalf("remove policy pin: %v", err)
	}
	if err := oldPolicy.Pin(policyPin); err != nil {
		t.Fatalf("pin old policy map: %v", err)
	}
	layout, err := ebpf.LoadPinnedMap(filepath.Join(cfg.PinDir, layoutMapName), nil)
	if err != nil {
		t.Fatalf("open layout record: %v", err)
	}
	var fp [8]byte
	if err := layout.Lookup(layoutKey("fragments"), &fp); err != nil {
		t.Fatalf("layout record of fragments: %v", err)
	}
	if err := layout.Put(layoutKey("fragments"), [8]byte{1}); err != nil {
		t.Fatalf("change layout record: %v", err)
	}
	layout.Close()
	cfg.ConntrackMaxEntries *= 2

	d = openDatapath(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.PinDir, migrateDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set-aside maps left after open: %v", err)
	}
	if got := d.objs.Policy.ValueSize(); got != uint32(bpfPolicyValueSize()) {
		t.Errorf("policy value size %d, want %d", got, bpfPolicyValueSize())
	}
	if got := d.objs.Conntrack.MaxEntries(); got != cfg.ConntrackMaxEntries {
		t.Errorf("conntrack capacity %d, want %d", got, cfg.ConntrackMaxEntries)
	}
	ctAfter, err := d.Conntrack()
	if err != nil {
		t.Fatalf("conntrack after: %v", err)
	}
	if !sameFlows(ctBefore, ctAfter) {
		t.Errorf("conntrack entries not carried over:\nbefore %+v\nafter  %+v", ctBefore, ctAfter)
	}
	checkPolicyCompiled(t, d)
	if err := roundTrip(c, "after"); err != nil {
		t.Errorf("established connection dropped by the migration: %v", err)
	}
	if !passes("10.199.2.2:8080") {
		t.Errorf("allowed flow dropped after the migration")
	}
	if connects("10.199.2.2:9090") {
		t.Errorf("violation passed after the migration")
	}
	if got := d.Table(); len(got.Verdicts) != 4 || got.Modes[idA] != ModeProtect {
		t.Errorf("table after migration: %+v", got)
	}

	// Cut short: the conntrack table was set aside, the process died
	// before the links moved. The next Open carries it over and finishes.
	ctBefore, _ = d.Conntrack()
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.PinDir, migrateDirName, "carry"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(cfg.PinDir, "conntrack"), filepath.Join(cfg.PinDir, migrateDirName, "carry", "conntrack")); err != nil {
		t.Fatalf("set conntrack aside: %v", err)
	}
	d = openDatapath(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.PinDir, migrateDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set-aside maps left after the finishing open: %v", err)
	}
	ctAfter, err = d.Conntrack()
	if err != nil {
		t.Fatalf("conntrack: %v", err)
	}
	if !sameFlows(ctBefore, ctAfter) {
		t.Errorf("conntrack of the cut-short migration not carried over:\nbefore %+v\nafter  %+v", ctBefore, ctAfter)
	}
	if err := roundTrip(c, "finished"); err != nil {
		t.Errorf("established connection dropped: %v", err)
	}
}

// sameFlows reports whether every flow of want is in got.
func sameFlows(want, got []Conn) bool {
	type flow struct {
		ep           uint64
		dir          Direction
		src, dst     string
		sport, dport uint16
		proto        uint8
	}
	key := func(c Conn) flow {
		return flow{c.Endpoint, c.Dir, c.SrcAddr.String(), c.DstAddr.String(), c.SrcPort, c.DstPort, c.Proto}
	}
	have := map[flow]bool{}
	for _, c := range got {
		have[key(c)] = true
	}
	for _, c := range want {
		if !have[key(c)] {
			return false
		}
	}
	return len(want) > 0
}

func bpfPolicyValueSize() int {
	spec, err := bpf.LoadDatapath()
	if err != nil {
		return -1
	}
	return int(spec.Maps[bpf.DatapathMapPolicy].ValueSize)
}

// TestPrivilegedLayoutRecord checks the round trip of the layout record
// and that distinct layouts get distinct fingerprints.
func TestPrivilegedLayoutRecord(t *testing.T) {
	skipUnlessRoot(t)
	dir := testConfig(t).PinDir
	if err := ensureBPFFS(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if got, err := readLayout(dir); err != nil || len(got) != 0 {
		t.Errorf("no record: %v %v, want empty", got, err)
	}
	spec, err := bpf.LoadDatapath()
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	specs := pinnedSpecs(spec)
	if err := writeLayout(dir, specs); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := readLayout(dir)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	for name, ms := range specs {
		if fp := fingerprint(ms); got[name] != fp || (fp == "" && ms.Type != ebpf.RingBuf) {
			t.Errorf("map %s: read %q, want %q", name, got[name], fp)
		}
	}
	if fingerprint(specs["policy"]) == fingerprint(specs["conntrack"]) {
		t.Errorf("policy and conntrack share a fingerprint")
	}
}

// TestPrivilegedFailedOpenLeavesNoNewPins checks that an Open whose maps
// cannot all be created (a conntrack table far too large) removes the pins
// of the maps it did create and loses none it found, and that the next
// Open compiles a policy map whose pin was lost from the recorded
// verdicts.
func TestPrivilegedFailedOpenLeavesNoNewPins(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	closedWithTable(t, cfg)
	// The config and policy pins are lost (the failed Open creates them
	// anew), the conntrack table differs (set aside), the others are
	// reused.
	for _, name := range []string{"config", "policy"} {
		if err := os.Remove(filepath.Join(cfg.PinDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	bad := cfg
	bad.ConntrackMaxEntries = 1 << 31
	if _, err := Open(bad, quietLogger()); err == nil {
		t.Fatalf("open with a conntrack table of %d entries: no error", bad.ConntrackMaxEntries)
	}
	for _, name := range []string{"config", "policy"} {
		if _, err := os.Lstat(filepath.Join(cfg.PinDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the failed open left the %s map it created pinned: %v", name, err)
		}
	}
	for _, name := range []string{"identities", "modes", "endpoints"} {
		if _, err := os.Lstat(filepath.Join(cfg.PinDir, name)); err != nil {
			t.Errorf("the failed open removed the %s map it found: %v", name, err)
		}
	}
	// The conntrack table of another capacity was set aside, not lost.
	if _, err := os.Lstat(filepath.Join(cfg.PinDir, migrateDirName, "carry", "conntrack")); err != nil {
		t.Errorf("the failed open lost the conntrack table it found: %v", err)
	}
	d := openDatapath(t, cfg)
	defer d.Destroy()
	if got := d.Table(); len(got.Verdicts) != 4 {
		t.Errorf("table after the failed open: %+v", got)
	}
	checkPolicyCompiled(t, d)
}

// TestPrivilegedFailedMigrationLeavesNoNewPins fails an Open after its
// programs loaded (a set-aside conntrack pin that is no map) and checks
// that the policy map it created beside the recorded verdicts lost its pin,
// so that the next Open compiles it from them.
func TestPrivilegedFailedMigrationLeavesNoNewPins(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	closedWithTable(t, cfg)
	if err := os.Remove(filepath.Join(cfg.PinDir, bpf.DatapathMapPolicy)); err != nil {
		t.Fatal(err)
	}
	bogus := filepath.Join(cfg.PinDir, migrateDirName, "carry", bpf.DatapathMapConntrack)
	if err := os.MkdirAll(bogus, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg, quietLogger()); err == nil {
		t.Fatalf("open with a set-aside conntrack pin that is a directory: no error")
	}
	if _, err := os.Lstat(filepath.Join(cfg.PinDir, bpf.DatapathMapPolicy)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed open left the policy map it created pinned: %v", err)
	}
	if err := os.Remove(bogus); err != nil {
		t.Fatal(err)
	}
	d := openDatapath(t, cfg)
	defer d.Destroy()
	checkPolicyCompiled(t, d)
}

// TestPrivilegedConvertsReshapedEntries pins a conntrack table of an
// "older release" whose entries lack fields the current one has (40 bytes:
// no walk, no seq) and checks that Open converts each entry field by field
// by name: what both layouts have keeps its value, the new fields start at
// zero.
func TestPrivilegedConvertsReshapedEntries(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(cfg.PinDir)
	spec, err := bpf.LoadDatapath()
	if err != nil {
		t.Fatal(err)
	}
	ct := spec.Maps[bpf.DatapathMapConntrack]
	cur := btf.UnderlyingType(ct.Value).(*btf.Struct)
	typeOf := map[string]btf.Type{}
	for _, m := range cur.Members {
		typeOf[m.Name] = m.Type
	}
	var members []btf.Member
	off := uint32(0)
	for _, f := range []struct {
		name string
		size uint32
	}{{"created_ns", 8}, {"seen_ns", 8}, {"generation", 4}, {"rule_id", 4}, {"src_id", 4}, {"dst_id", 4},
		{"flags", 1}, {"sampled", 1}, {"state", 1}, {"fin", 1}, {"app", 1}, {"mode", 1}, {"pad", 2}} {
		typ := typeOf[f.name]
		if f.name == "pad" {
			typ = typeOf["fin"] // a u8 pair stands for the old u16
			members = append(members, btf.Member{Name: "pad", Type: typ, Offset: btf.Bits(off * 8)},
				btf.Member{Name: "pad_hi", Type: typ, Offset: btf.Bits((off + 1) * 8)})
			off += 2
			continue
		}
		if typ == nil {
			t.Fatalf("the current ct_entry has no %s", f.name)
		}
		members = append(members, btf.Member{Name: f.name, Type: typ, Offset: btf.Bits(off * 8)})
		off += f.size
	}
	old := &btf.Struct{Name: cur.Name, Size: off, Members: members}
	oldMap, err := ebpf.NewMap(&ebpf.MapSpec{Name: "conntrack", Type: ebpf.LRUHash, KeySize: ct.KeySize, ValueSize: off,
		MaxEntries: cfg.ConntrackMaxEntries, Key: ct.Key, Value: old})
	if err != nil {
		t.Fatalf("create the old conntrack table: %v", err)
	}
	defer oldMap.Close()
	key := bpf.DatapathCtKey{Endpoint: 7, Sport: 40000, Dport: 8080, Proto: 6, Dir: 1}
	key.Saddr[10], key.Saddr[11], key.Saddr[15] = 0xff, 0xff, 2
	val := make([]byte, off)
	binary.LittleEndian.PutUint64(val[0:], 111) // created_ns
	binary.LittleEndian.PutUint64(val[8:], 222) // seen_ns
	binary.LittleEndian.PutUint32(val[16:], 3)  // generation
	binary.LittleEndian.PutUint32(val[20:], 77) // rule_id
	binary.LittleEndian.PutUint32(val[24:], uint32(idA))
	binary.LittleEndian.PutUint32(val[28:], uint32(idB))
	val[32], val[34], val[36], val[37] = 0x40, 3, 1, 2 // flags, state, app, mode
	if err := oldMap.Put(key, val); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(cfg.PinDir, "conntrack")
	if err := os.Remove(pin); err != nil {
		t.Fatal(err)
	}
	if err := oldMap.Pin(pin); err != nil {
		t.Fatal(err)
	}

	d = openDatapath(t, cfg)
	defer d.Destroy()
	var got bpf.DatapathCtEntry
	if err := d.objs.Conntrack.Lookup(key, &got); err != nil {
		t.Fatalf("the entry was not carried over: %v", err)
	}
	want := bpf.DatapathCtEntry{CreatedNs: 111, SeenNs: 222, Generation: 3, RuleId: 77, SrcId: uint32(idA), DstId: uint32(idB),
		Flags: 0x40, State: 3, App: 1, Mode: 2}
	if got != want {
		t.Errorf("converted entry\n got %+v\nwant %+v", got, want)
	}
}

// checkPolicyCompiled checks that d's policy map holds what its recorded
// verdicts compile to (and something).
func checkPolicyCompiled(t *testing.T, d *Datapath) {
	t.Helper()
	pol, err := d.readPolicy()
	if err != nil {
		t.Fatalf("read policy: %v", err)
	}
	if want := compileVerdicts(d.st, nil); len(pol) != len(want) || len(pol) == 0 {
		t.Errorf("policy map holds %d prefixes, want the %d the recorded verdicts compile to", len(pol), len(want))
	}
}

// closedWithTable opens a datapath on cfg, applies the base table in
// Protect and closes it: its maps stay pinned, removed when the test ends.
func closedWithTable(t *testing.T, cfg Config) {
	t.Helper()
	d := openDatapath(t, cfg)
	t.Cleanup(func() { os.RemoveAll(cfg.PinDir) })
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
