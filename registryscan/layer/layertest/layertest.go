// Package layertest builds layer tarballs that archive/tar cannot write,
// for tests of the layer walker and the scanner.
package layertest

import (
	"bytes"
	"fmt"
	"strings"
)

// SparseTar builds a tar holding one PAX 1.0 sparse file of logical size
// size whose only data is "x" at offset 0. archive/tar cannot write sparse
// files, so the blocks are assembled by hand.
func SparseTar(name string, size int64) []byte {
	var recs strings.Builder
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", name},
		{"GNU.sparse.realsize", fmt.Sprint(size)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec)
		for len(fmt.Sprint(n+len(fmt.Sprint(n)))) != len(fmt.Sprint(n)) {
			n++
		}
		n += len(fmt.Sprint(n + len(fmt.Sprint(n))))
		recs.WriteString(fmt.Sprint(n) + rec)
	}
	body := make([]byte, 512)
	copy(body, "1\n0\n1\n")
	body = append(body, 'x')
	var out bytes.Buffer
	out.Write(ustarBlock("PaxHeaders/"+name, 'x', int64(recs.Len())))
	out.Write(pad512([]byte(recs.String())))
	out.Write(ustarBlock("GNUSparseFile.0/"+name, '0', int64(len(body))))
	out.Write(pad512(body))
	out.Write(make([]byte, 1024))
	return out.Bytes()
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

func ustarBlock(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}
