//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpf

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// rodataSymbol returns the bytes of the named object in the datapath
// object's .rodata.
func rodataSymbol(t *testing.T, f *elf.File, name string) []byte {
	t.Helper()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("symbols: %v", err)
	}
	for _, s := range syms {
		if s.Name != name {
			continue
		}
		if int(s.Section) >= len(f.Sections) || f.Sections[s.Section].Name != ".rodata" {
			t.Fatalf("%s is not in .rodata", name)
		}
		data, err := f.Sections[s.Section].Data()
		if err != nil {
			t.Fatalf("read .rodata: %v", err)
		}
		if s.Value+s.Size > uint64(len(data)) {
			t.Fatalf("%s runs past .rodata", name)
		}
		return data[s.Value : s.Value+s.Size]
	}
	t.Fatalf("no symbol %s", name)
	return nil
}

// TestHuffmanTables holds the datapath's HPACK Huffman decoding tables
// (huff_first, huff_index, huff_syms), as compiled, to x/net's coder: each
// of the 256 symbols is in huff_syms at its code's place among the codes of
// its length, which start at huff_first's code.
func TestHuffmanTables(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(_DatapathBytes))
	if err != nil {
		t.Fatalf("open datapath object: %v", err)
	}
	rawFirst := rodataSymbol(t, f, "huff_first")
	rawIndex := rodataSymbol(t, f, "huff_index")
	syms := rodataSymbol(t, f, "huff_syms")
	if len(rawFirst) != 32*4 || len(rawIndex) != 32*2 || len(syms) != 256 {
		t.Fatalf("table sizes %d, %d, %d bytes; want %d, %d, %d", len(rawFirst), len(rawIndex), len(syms), 32*4, 32*2, 256)
	}
	var first [32]uint32
	var index [32]uint16
	for l := range first {
		first[l] = binary.LittleEndian.Uint32(rawFirst[4*l:])
		index[l] = binary.LittleEndian.Uint16(rawIndex[2*l:])
	}

	type code struct {
		sym  byte
		len  int
		code uint32
	}
	var codes []code
	for s := range 256 {
		sym := string([]byte{byte(s)})
		n := int(hpack.HuffmanEncodeLength(strings.Repeat(sym, 8))) // 8 codes: whole bytes
		b := hpack.AppendHuffmanString(nil, sym)
		var v uint64
		for _, x := range b {
			v = v<<8 | uint64(x)
		}
		codes = append(codes, code{byte(s), n, uint32(v >> (len(b)*8 - n))})
	}
	sort.Slice(codes, func(i, j int) bool {
		if codes[i].len != codes[j].len {
			return codes[i].len < codes[j].len
		}
		return codes[i].code < codes[j].code
	})
	const maxLen = 30 // HUFF_MAXLEN
	if got := codes[len(codes)-1].len; got != maxLen {
		t.Errorf("longest code is %d bits, want %d", got, maxLen)
	}
	for i, c := range codes {
		if syms[i] != c.sym {
			t.Errorf("huff_syms[%d] = %#x, want %#x", i, syms[i], c.sym)
		}
		lo, hi := int(index[c.len]), int(index[c.len+1])
		if i < lo || i >= hi {
			t.Errorf("symbol %#x (code %#x, %d bits) is %d, outside its length's [%d, %d)", c.sym, c.code, c.len, i, lo, hi)
			continue
		}
		if want := first[c.len] + uint32(i-lo); c.code != want {
			t.Errorf("symbol %#x: code %#x, tables say %#x", c.sym, c.code, want)
		}
	}
	for l := 0; l+1 < len(index); l++ {
		if index[l] > index[l+1] {
			t.Errorf("huff_index[%d] = %d after %d", l+1, index[l+1], index[l])
		}
	}
	if index[len(index)-1] != 256 {
		t.Errorf("huff_index ends at %d, want 256", index[len(index)-1])
	}
}
