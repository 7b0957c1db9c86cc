//go:build linux

package datapath

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// Upgrades. The maps under PinDir outlive the agent, and a newer release
// may lay them out otherwise (a wider policy value, a bigger conntrack
// table). Open compares every pinned map with what the new programs
// expect: its type, key and value sizes, capacity and flags, and a
// fingerprint of its key and value types recorded in the pinned map
// "layout" when the map was created. A pinned map that differs is set aside: its pin
// moves under PinDir/migrate, so the old programs, which still hold it,
// enforce on, and the new programs get a new map under the old name.
// Entries move over where the layout allows it: a map whose entries have
// the same layout (only the capacity or flags changed) is copied entry by
// entry; one whose value changed shape (a conntrack entry that gained a
// field) is converted field by field, by name, from the types the old map
// was created with; the policy map is compiled afresh from the recorded
// verdicts; the others (per-CPU counters, events, or a map whose key
// changed) start empty, and conntrack entries lost that way are rebuilt
// from the policy by the next packet of each flow. Only then do the pinned
// links move to the new programs, in one atomic swap per link, and the
// set-aside maps go with the old programs. An Open cut short finds the
// set-aside pins on its next run and finishes the migration.

const (
	migrateDirName = "migrate"
	layoutMapName  = "layout"
)

// pinnedSpecs returns the specs of every map pinned by name, keyed by name.
func pinnedSpecs(spec *ebpf.CollectionSpec, extra ...*ebpf.MapSpec) map[string]*ebpf.MapSpec {
	out := map[string]*ebpf.MapSpec{}
	for name, ms := range spec.Maps {
		if ms.Pinning == ebpf.PinByName {
			out[name] = ms
		}
	}
	for _, ms := range extra {
		out[ms.Name] = ms
	}
	return out
}

// fingerprint identifies the layout of a map's key and value types: field
// names, offsets, sizes and encodings. Maps without BTF types get "".
func fingerprint(ms *ebpf.MapSpec) string {
	if ms.Key == nil && ms.Value == nil {
		return ""
	}
	var b strings.Builder
	writeType(&b, ms.Key, 0)
	b.WriteString("|")
	writeType(&b, ms.Value, 0)
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

func writeType(b *strings.Builder, t btf.Type, depth int) {
	if depth > 8 {
		b.WriteString("…")
		return
	}
	switch t := btf.UnderlyingType(t).(type) {
	case nil:
		b.WriteString("nil")
	case *btf.Int:
		fmt.Fprintf(b, "int%d/%d", t.Size*8, t.Encoding)
	case *btf.Enum:
		fmt.Fprintf(b, "enum%d", t.Size*8)
	case *btf.Pointer:
		b.WriteString("ptr")
	case *btf.Array:
		fmt.Fprintf(b, "[%d]", t.Nelems)
		writeType(b, t.Type, depth+1)
	case *btf.Struct:
		writeMembers(b, "struct", t.Size, t.Members, depth)
	case *btf.Union:
		writeMembers(b, "union", t.Size, t.Members, depth)
	default:
		fmt.Fprintf(b, "%T", t)
	}
}

func writeMembers(b *strings.Builder, kind string, size uint32, ms []btf.Member, depth int) {
	fmt.Fprintf(b, "%s%d{", kind, size)
	for _, m := range ms {
		fmt.Fprintf(b, "%s@%d:%d:", m.Name, m.Offset, m.BitfieldSize)
		writeType(b, m.Type, depth+1)
		b.WriteString(";")
	}
	b.WriteString("}")
}

// layoutSpec is the pinned map of fingerprints: map name (NUL padded) to
// the first 8 bytes of its fingerprint. Its own layout never changes.
func layoutSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: layoutMapName, Type: ebpf.Hash, KeySize: 16, ValueSize: 8, MaxEntries: 64,
		Pinning: ebpf.PinByName}
}

func layoutKey(name string) [16]byte {
	var k [16]byte
	copy(k[:], name)
	return k
}

// readLayout reads the fingerprints recorded under pinDir. No map (maps
// pinned before fingerprints were kept) reads empty.
func readLayout(pinDir string) (map[string]string, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, layoutMapName), nil)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open map layout record: %w", err)
	}
	defer m.Close()
	if err := layoutSpec().Compatible(m); err != nil {
		return nil, fmt.Errorf("map layout record %s: %w", filepath.Join(pinDir, layoutMapName), err)
	}
	out := map[string]string{}
	var k [16]byte
	var v [8]byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[strings.TrimRight(string(k[:]), "\x00")] = hex.EncodeToString(v[:])
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read map layout record: %w", err)
	}
	return out, nil
}

// writeLayout records the fingerprint of every pinned map.
func writeLayout(pinDir string, specs map[string]*ebpf.MapSpec) error {
	m, err := ebpf.NewMapWithOptions(layoutSpec(), ebpf.MapOptions{PinPath: pinDir})
	if err != nil {
		return fmt.Errorf("open map layout record: %w", err)
	}
	defer m.Close()
	for name, ms := range specs {
		fp := fingerprint(ms)
		if fp == "" {
			continue
		}
		var v [8]byte
		hex.Decode(v[:], []byte(fp))
		if err := m.Put(layoutKey(name), v); err != nil {
			return fmt.Errorf("record layout of map %s: %w", name, err)
		}
	}
	return nil
}

// setAside moves the pin of every map whose layout differs from its spec
// to PinDir/migrate/carry, or to PinDir/migrate/drop when its entries
// changed shape and cannot be copied as they are (they are converted field
// by field where they can be), and returns why each moved, by name.
func setAside(pinDir string, specs map[string]*ebpf.MapSpec) (map[string]string, error) {
	layout, err := readLayout(pinDir)
	if err != nil {
		return nil, err
	}
	moved := map[string]string{}
	for name, ms := range specs {
		path := filepath.Join(pinDir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s: %w", path, err)
		}
		why := ""
		if err := ms.Compatible(m); err != nil {
			why = err.Error()
		}
		reshaped := false
		if old, ok := layout[name]; ok && old != fingerprint(ms) {
			reshaped = true
			why = strings.TrimPrefix(why+", entry layout changed", ", ")
		} else if m.KeySize() != ms.KeySize || m.ValueSize() != ms.ValueSize {
			reshaped = true
		}
		m.Close()
		if why == "" {
			continue
		}
		sub := "carry"
		if reshaped {
			sub = "drop"
		}
		dir := filepath.Join(pinDir, migrateDirName, sub)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Rename(path, filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("set aside pinned map %s: %w", path, err)
		}
		moved[name] = why
	}
	return moved, nil
}

// pinnedNames returns the names of the maps of specs pinned under pinDir.
func pinnedNames(pinDir string, specs map[string]*ebpf.MapSpec) map[string]bool {
	out := map[string]bool{}
	for name := range specs {
		if _, err := os.Lstat(filepath.Join(pinDir, name)); err == nil {
			out[name] = true
		}
	}
	return out
}

// unpinNew removes the pins of the maps of specs that were not in before
// (a load that failed after creating them).
func unpinNew(pinDir string, specs map[string]*ebpf.MapSpec, before map[string]bool) {
	for name := range specs {
		if !before[name] {
			os.Remove(filepath.Join(pinDir, name))
		}
	}
}

// copyable says whether the entries of a map of this type can be copied
// one by one with plain lookups and updates.
func copyable(t ebpf.MapType) bool {
	switch t {
	case ebpf.Hash, ebpf.LRUHash, ebpf.LPMTrie, ebpf.Array:
		return true
	}
	return false
}

// restoreSetAside copies the entries of the set-aside maps into the maps
// of this Open where their layouts match, and reports whether the policy
// map was among them (it is then compiled afresh by the caller). maps
// holds this Open's maps by name.
func (d *Datapath) restoreSetAside(maps map[string]*ebpf.Map, specs map[string]*ebpf.MapSpec) (policyMoved bool, err error) {
	root := filepath.Join(d.cfg.PinDir, migrateDirName)
	for _, sub := range []string{"drop", "carry"} {
		dir := filepath.Join(root, sub)
		names, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return policyMoved, fmt.Errorf("list set-aside maps: %w", err)
		}
		for _, n := range names {
			name := n.Name()
			dst := maps[name]
			if name == bpf.DatapathMapPolicy {
				policyMoved = true
			}
			if dst == nil || name == bpf.DatapathMapPolicy {
				d.log.Info("datapath migration: entries not carried over", "map", name)
				continue
			}
			src, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
			if err != nil {
				return policyMoved, fmt.Errorf("open set-aside map %s: %w", name, err)
			}
			if !copyable(src.Type()) || src.Type() != dst.Type() {
				src.Close()
				d.log.Info("datapath migration: entries not carried over", "map", name, "type", src.Type())
				continue
			}
			var n int
			if sub == "drop" {
				n, err = convertEntries(src, dst, specs[name])
			} else {
				n, err = copyEntries(src, dst)
			}
			src.Close()
			if err != nil {
				// What could not be carried over starts empty: the
				// programs rebuild a flow's entry from the policy.
				d.log.Warn("datapath migration: entries not carried over", "map", name, "err", err)
				continue
			}
			d.log.Info("datapath migration: entries carried over", "map", name, "entries", n, "converted", sub == "drop")
		}
	}
	return policyMoved, nil
}

// span is a run of bytes an entry conversion copies.
type span struct{ from, to, n uint32 }

// convertEntries copies the entries of src, a map of an older layout,
// into dst, converting each value field by field: a field of the new value
// takes the bytes of the old field of the same name and size, the others
// are zero. The old layout is read from the BTF the old map was created
// with; the key layout must not have changed.
func convertEntries(src, dst *ebpf.Map, spec *ebpf.MapSpec) (int, error) {
	if spec == nil || spec.Key == nil || spec.Value == nil {
		return 0, errors.New("no layout known for the new map")
	}
	old, err := mapTypes(src)
	if err != nil {
		return 0, err
	}
	newKey, newVal := btf.UnderlyingType(spec.Key), btf.UnderlyingType(spec.Value)
	oldKey, err := old.AnyTypeByName(spec.Key.TypeName())
	if err != nil || src.KeySize() != dst.KeySize() || layoutOf(oldKey) != layoutOf(newKey) {
		return 0, fmt.Errorf("key layout changed (%d to %d bytes)", src.KeySize(), dst.KeySize())
	}
	oldVal, err := old.AnyTypeByName(spec.Value.TypeName())
	if err != nil {
		return 0, fmt.Errorf("old value type %q: %w", spec.Value.TypeName(), err)
	}
	plan, err := convertPlan(btf.UnderlyingType(oldVal), newVal)
	if err != nil {
		return 0, err
	}
	k := make([]byte, src.KeySize())
	v := make([]byte, src.ValueSize())
	nv := make([]byte, dst.ValueSize())
	n := 0
	it := src.Iterate()
	for it.Next(&k, &v) {
		clear(nv)
		for _, s := range plan {
			copy(nv[s.to:s.to+s.n], v[s.from:s.from+s.n])
		}
		if err := dst.Put(k, nv); err != nil {
			return n, fmt.Errorf("entry %d: %w", n, err)
		}
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("iterate: %w", err)
	}
	return n, nil
}

// mapTypes returns the BTF a map was created with.
func mapTypes(m *ebpf.Map) (*btf.Spec, error) {
	info, err := m.Info()
	if err != nil {
		return nil, fmt.Errorf("map info: %w", err)
	}
	id, ok := info.BTFID()
	if !ok {
		return nil, errors.New("the old map has no type information")
	}
	h, err := btf.NewHandleFromID(id)
	if err != nil {
		return nil, fmt.Errorf("old map types: %w", err)
	}
	defer h.Close()
	spec, err := h.Spec(nil)
	if err != nil {
		return nil, fmt.Errorf("old map types: %w", err)
	}
	return spec, nil
}

// layoutOf describes a type's layout (see fingerprint).
func layoutOf(t btf.Type) string {
	var b strings.Builder
	writeType(&b, t, 0)
	return b.String()
}

// convertPlan maps the fields of struct oldT onto those of struct newT by
// name and size.
func convertPlan(oldT, newT btf.Type) ([]span, error) {
	ost, ok1 := oldT.(*btf.Struct)
	ns, ok2 := newT.(*btf.Struct)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("values are not structs (%T, %T)", oldT, newT)
	}
	byName := map[string]btf.Member{}
	for _, m := range ost.Members {
		if m.Name != "" && m.BitfieldSize == 0 && m.Offset%8 == 0 {
			byName[m.Name] = m
		}
	}
	var plan []span
	for _, m := range ns.Members {
		om, ok := byName[m.Name]
		if !ok || m.BitfieldSize != 0 || m.Offset%8 != 0 || strings.HasPrefix(m.Name, "pad") {
			continue
		}
		on, err1 := btf.Sizeof(om.Type)
		nn, err2 := btf.Sizeof(m.Type)
		if err1 != nil || err2 != nil || on != nn || layoutOf(om.Type) != layoutOf(m.Type) {
			continue
		}
		plan = append(plan, span{from: om.Offset.Bytes(), to: m.Offset.Bytes(), n: uint32(nn)})
	}
	if len(plan) == 0 {
		return nil, errors.New("no field of the old value is in the new one")
	}
	return plan, nil
}

// copyEntries copies every entry of src into dst, of the same type and key
// and value sizes. An entry dst has no room for is an error; an array
// index past dst's end is left out.
func copyEntries(src, dst *ebpf.Map) (int, error) {
	if src.Type() != dst.Type() || src.KeySize() != dst.KeySize() || src.ValueSize() != dst.ValueSize() {
		return 0, fmt.Errorf("%s with key/value sizes %d/%d, want %s with %d/%d", src.Type(), src.KeySize(),
			src.ValueSize(), dst.Type(), dst.KeySize(), dst.ValueSize())
	}
	k := make([]byte, src.KeySize())
	v := make([]byte, src.ValueSize())
	n := 0
	it := src.Iterate()
	for it.Next(&k, &v) {
		if src.Type() == ebpf.Array && dst.MaxEntries() <= binary.NativeEndian.Uint32(k) {
			continue
		}
		if err := dst.Put(k, v); err != nil {
			return n, fmt.Errorf("entry %d: %w", n, err)
		}
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("iterate: %w", err)
	}
	return n, nil
}

// rewritePolicy compiles the policy map afresh from the verdicts of the
// state read back.
func (d *Datapath) rewritePolicy() error {
	pol := compileVerdicts(d.st, nil)
	keys := make([]bpf.DatapathPolicyKey, 0, len(pol))
	vals := make([]bpf.DatapathPolicyValue, 0, len(pol))
	for k, v := range pol {
		keys = append(keys, encodePolicyKey(k))
		vals = append(vals, encodePolicyValue(v))
	}
	if _, err := batchPut(d.objs.Policy, keys, vals); err != nil {
		return fmt.Errorf("write migrated policy (%d prefixes): %w", len(keys), err)
	}
	d.policyCount = len(pol)
	return nil
}

// finishMigration removes the set-aside maps once the links point at the
// new programs.
func (d *Datapath) finishMigration() error {
	if err := os.RemoveAll(filepath.Join(d.cfg.PinDir, migrateDirName)); err != nil {
		return fmt.Errorf("remove set-aside maps: %w", err)
	}
	return nil
}

// mapsByName returns this Open's maps by their names in the programs.
func (d *Datapath) mapsByName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{"verdicts": d.verdicts}
	v := reflect.ValueOf(&d.objs.DatapathMaps).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && name != "" && m != nil {
			out[name] = m
		}
	}
	return out
}
