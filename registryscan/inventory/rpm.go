package inventory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrRPMUnsupported is returned for an rpm database in a format this
// package does not read.
var ErrRPMUnsupported = errors.New("inventory: rpm database format not supported")

// Limits on rpm structures, against hostile databases.
const (
	rpmMaxIndex    = 1 << 16
	rpmMaxData     = 64 << 20
	rpmMaxPackages = 1 << 18
)

// ParseRPMDB reads an rpm package database in any of the three formats rpm
// has used: SQLite (rpmdb.sqlite, rpm >= 4.16), Berkeley DB hash
// (Packages, older Red Hat family), or NDB (Packages.db, SUSE).
func ParseRPMDB(data []byte) ([]Package, error) {
	var blobs [][]byte
	var err error
	switch {
	case bytes.HasPrefix(data, []byte("SQLite format 3\x00")):
		blobs, err = sqliteRPMBlobs(data)
	case bytes.HasPrefix(data, []byte("RpmP")):
		blobs, err = ndbBlobs(data)
	case len(data) >= 16 && (binary.LittleEndian.Uint32(data[12:]) == bdbHashMagic || binary.BigEndian.Uint32(data[12:]) == bdbHashMagic):
		blobs, err = bdbHashValues(data)
	default:
		return nil, fmt.Errorf("%w (no SQLite, NDB or Berkeley DB hash signature in %d bytes)", ErrRPMUnsupported, len(data))
	}
	if err != nil {
		return nil, fmt.Errorf("rpm database: %w", err)
	}
	var out []Package
	for i, b := range blobs {
		p, err := parseRPMHeader(b)
		if err != nil {
			return nil, fmt.Errorf("rpm database: header %d: %w", i, err)
		}
		if p.Name == "gpg-pubkey" {
			continue // imported signing keys, not packages
		}
		out = append(out, p)
	}
	return out, nil
}

// rpm header tags and types used here.
const (
	rpmTagName      = 1000
	rpmTagVersion   = 1001
	rpmTagRelease   = 1002
	rpmTagEpoch     = 1003
	rpmTagArch      = 1022
	rpmTagSourceRPM = 1044

	rpmTypeInt32  = 4
	rpmTypeString = 6
	rpmTypeI18N   = 9
)

// parseRPMHeader reads a header blob as stored in the database: index
// count and data length (big-endian), the index entries, then the data.
func parseRPMHeader(b []byte) (Package, error) {
	if len(b) < 8 {
		return Package{}, fmt.Errorf("header of %d bytes is too short", len(b))
	}
	il := binary.BigEndian.Uint32(b)
	dl := binary.BigEndian.Uint32(b[4:])
	if il == 0 || il > rpmMaxIndex || dl > rpmMaxData {
		return Package{}, fmt.Errorf("header index count %d or data length %d out of range", il, dl)
	}
	start := 8 + 16*int(il)
	if len(b) < start+int(dl) {
		return Package{}, fmt.Errorf("header of %d bytes is shorter than its %d index entries and %d data bytes", len(b), il, dl)
	}
	data := b[start : start+int(dl)]
	str := func(off uint32) (string, error) {
		if int64(off) >= int64(len(data)) {
			return "", fmt.Errorf("string offset %d beyond %d data bytes", off, len(data))
		}
		end := bytes.IndexByte(data[off:], 0)
		if end < 0 {
			return "", fmt.Errorf("unterminated string at offset %d", off)
		}
		return string(data[off : int(off)+end]), nil
	}
	var p Package
	var epoch, rel, srcrpm string
	for i := 0; i < int(il); i++ {
		e := b[8+16*i:]
		tag, typ := binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
		off, count := binary.BigEndian.Uint32(e[8:]), binary.BigEndian.Uint32(e[12:])
		var dst *string
		switch tag {
		case rpmTagName:
			dst = &p.Name
		case rpmTagVersion:
			dst = &p.Version
		case rpmTagRelease:
			dst = &rel
		case rpmTagArch:
			dst = &p.Arch
		case rpmTagSourceRPM:
			dst = &srcrpm
		case rpmTagEpoch:
			if typ != rpmTypeInt32 || count < 1 || int64(off)+4 > int64(len(data)) {
				return Package{}, fmt.Errorf("malformed EPOCH entry (type %d, offset %d)", typ, off)
			}
			epoch = fmt.Sprint(binary.BigEndian.Uint32(data[off:]))
			continue
		default:
			continue
		}
		if typ != rpmTypeString && typ != rpmTypeI18N {
			return Package{}, fmt.Errorf("tag %d has type %d, want a string", tag, typ)
		}
		s, err := str(off)
		if err != nil {
			return Package{}, fmt.Errorf("tag %d: %w", tag, err)
		}
		*dst = s
	}
	if p.Name == "" || p.Version == "" {
		return Package{}, fmt.Errorf("package %q version %q: missing NAME or VERSION", p.Name, p.Version)
	}
	if rel != "" {
		p.Version += "-" + rel
	}
	if epoch != "" && epoch != "0" {
		p.Version = epoch + ":" + p.Version
	}
	p.Type = RPM
	p.SourceName = p.Name
	if srcrpm != "" && srcrpm != "(none)" {
		// name-version-release.src.rpm
		s := strings.TrimSuffix(strings.TrimSuffix(srcrpm, ".rpm"), ".src")
		s = strings.TrimSuffix(s, ".nosrc")
		if i := strings.LastIndexByte(s, '-'); i > 0 {
			if j := strings.LastIndexByte(s[:i], '-'); j > 0 {
				p.SourceName, p.SourceVersion = s[:j], s[j+1:]
			}
		}
	}
	return p, nil
}

// NDB (SUSE's rpm database): a header page, slot pages pointing at blobs.
const (
	ndbPageSize    = 4096
	ndbSlotSize    = 16
	ndbBlockSize   = 16
	ndbSlotMagic   = 'S' | 'l'<<8 | 'o'<<16 | 't'<<24
	ndbBlobMagic   = 'B' | 'l'<<8 | 'b'<<16 | 'S'<<24
	ndbHeaderSlots = 2 // the 32-byte file header takes two slot places
)

func ndbBlobs(data []byte) ([][]byte, error) {
	le := binary.LittleEndian
	if len(data) < 32 {
		return nil, fmt.Errorf("ndb: %d bytes is too short", len(data))
	}
	if v := le.Uint32(data[4:]); v != 0 {
		return nil, fmt.Errorf("ndb: version %d not supported", v)
	}
	npages := le.Uint32(data[12:])
	if npages == 0 || uint64(npages)*ndbPageSize > uint64(len(data)) {
		return nil, fmt.Errorf("ndb: %d slot pages do not fit in %d bytes", npages, len(data))
	}
	nslots := int(npages)*ndbPageSize/ndbSlotSize - ndbHeaderSlots
	var out [][]byte
	for i := 0; i < nslots; i++ {
		s := data[32+i*ndbSlotSize:]
		if le.Uint32(s) != ndbSlotMagic {
			return nil, fmt.Errorf("ndb: slot %d: bad magic", i)
		}
		idx, blk, cnt := le.Uint32(s[4:]), le.Uint32(s[8:]), le.Uint32(s[12:])
		if idx == 0 {
			continue
		}
		off := uint64(blk) * ndbBlockSize
		if cnt == 0 || off+16 > uint64(len(data)) || off+uint64(cnt)*ndbBlockSize > uint64(len(data)) {
			return nil, fmt.Errorf("ndb: slot %d: blob at block %d (%d blocks) outside the file", i, blk, cnt)
		}
		bh := data[off:]
		if le.Uint32(bh) != ndbBlobMagic || le.Uint32(bh[4:]) != idx {
			return nil, fmt.Errorf("ndb: slot %d: blob header does not match", i)
		}
		n := uint64(le.Uint32(bh[12:]))
		if off+16+n > uint64(len(data)) {
			return nil, fmt.Errorf("ndb: slot %d: blob of %d bytes outside the file", i, n)
		}
		out = append(out, data[off+16:off+16+n])
		if len(out) > rpmMaxPackages {
			return nil, fmt.Errorf("ndb: more than %d packages", rpmMaxPackages)
		}
	}
	return out, nil
}

// Berkeley DB hash database (rpm's Packages before rpm 4.16).
const (
	bdbHashMagic     = 0x061561
	bdbPageHash      = 13 // P_HASH
	bdbPageHashUns   = 2  // P_HASH_UNSORTED
	bdbPageOverflow  = 7  // P_OVERFLOW
	bdbKeyData       = 1  // H_KEYDATA
	bdbOffPage       = 3  // H_OFFPAGE
	bdbPageHeaderLen = 26
)

func bdbHashValues(data []byte) ([][]byte, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	if binary.LittleEndian.Uint32(data[12:]) != bdbHashMagic {
		bo = binary.BigEndian
	}
	if len(data) < 72 {
		return nil, fmt.Errorf("bdb: %d bytes is too short for the metadata page", len(data))
	}
	if enc := data[24]; enc != 0 {
		return nil, fmt.Errorf("bdb: encrypted database (algorithm %d)", enc)
	}
	psize := bo.Uint32(data[20:])
	if psize < 512 || psize > 65536 || psize&(psize-1) != 0 {
		return nil, fmt.Errorf("bdb: page size %d out of range", psize)
	}
	last := bo.Uint32(data[32:])
	if uint64(last+1)*uint64(psize) > uint64(len(data)) {
		return nil, fmt.Errorf("bdb: %d pages of %d bytes do not fit in %d bytes", last+1, psize, len(data))
	}
	page := func(n uint32) []byte { return data[uint64(n)*uint64(psize) : uint64(n+1)*uint64(psize)] }
	var out [][]byte
	for pg := uint32(1); pg <= last; pg++ {
		p := page(pg)
		if t := p[25]; t != bdbPageHash && t != bdbPageHashUns {
			continue
		}
		entries := int(bo.Uint16(p[20:]))
		if bdbPageHeaderLen+2*entries > len(p) {
			return nil, fmt.Errorf("bdb: page %d: %d entries overflow the page", pg, entries)
		}
		// Entries alternate key, value; only values are headers.
		for i := 1; i < entries; i += 2 {
			off := int(bo.Uint16(p[bdbPageHeaderLen+2*i:]))
			if off >= len(p) {
				return nil, fmt.Errorf("bdb: page %d: entry %d at offset %d outside the page", pg, i, off)
			}
			switch p[off] {
			case bdbOffPage:
				if off+12 > len(p) {
					return nil, fmt.Errorf("bdb: page %d: truncated off-page entry", pg)
				}
				v, err := bdbOverflow(bo, page, last, bo.Uint32(p[off+4:]), bo.Uint32(p[off+8:]))
				if err != nil {
					return nil, fmt.Errorf("bdb: page %d: %w", pg, err)
				}
				out = append(out, v)
			case bdbKeyData:
				// Inline value: it runs to the previous entry's start
				// (or the page end for the first entry).
				end := len(p)
				if i > 0 {
					end = int(bo.Uint16(p[bdbPageHeaderLen+2*(i-1):]))
				}
				if end > len(p) || end <= off+1 {
					return nil, fmt.Errorf("bdb: page %d: entry %d has bad bounds", pg, i)
				}
				out = append(out, p[off+1:end])
			default:
				return nil, fmt.Errorf("bdb: page %d: entry %d has unknown type %d", pg, i, p[off])
			}
			if len(out) > rpmMaxPackages {
				return nil, fmt.Errorf("bdb: more than %d packages", rpmMaxPackages)
			}
		}
	}
	return out, nil
}

// bdbOverflow follows a chain of overflow pages holding total bytes.
func bdbOverflow(bo binary.ByteOrder, page func(uint32) []byte, last, pg, total uint32) ([]byte, error) {
	if total > rpmMaxData || uint64(total) > uint64(last+1)*uint64(len(page(0))) {
		return nil, fmt.Errorf("overflow value of %d bytes over the limit", total)
	}
	out := make([]byte, 0, total)
	seen := map[uint32]bool{}
	for pg != 0 && uint32(len(out)) < total {
		if pg > last || seen[pg] {
			return nil, fmt.Errorf("overflow chain reaches page %d (last %d, loop %v)", pg, last, seen[pg])
		}
		seen[pg] = true
		p := page(pg)
		if p[25] != bdbPageOverflow {
			return nil, fmt.Errorf("overflow chain page %d has type %d", pg, p[25])
		}
		n := int(bo.Uint16(p[22:])) // hf_offset holds the bytes used
		if bdbPageHeaderLen+n > len(p) {
			return nil, fmt.Errorf("overflow page %d claims %d bytes", pg, n)
		}
		out = append(out, p[bdbPageHeaderLen:bdbPageHeaderLen+n]...)
		pg = bo.Uint32(p[16:]) // next_pgno
	}
	if uint32(len(out)) != total {
		return nil, fmt.Errorf("overflow chain holds %d bytes, want %d", len(out), total)
	}
	return out, nil
}
