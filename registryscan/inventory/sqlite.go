package inventory

import (
	"encoding/binary"
	"fmt"
)

// A minimal read-only SQLite reader: enough to find a table in
// sqlite_master and read every row of it (table b-trees, overflow pages,
// the record format). rpm's SQLite database keeps each header in
// Packages(hnum INTEGER PRIMARY KEY, blob BLOB).

type sqliteDB struct {
	data   []byte
	psize  int
	usable int
	pages  int
}

func openSQLite(data []byte) (*sqliteDB, error) {
	if len(data) < 100 {
		return nil, fmt.Errorf("sqlite: %d bytes is too short", len(data))
	}
	psize := int(binary.BigEndian.Uint16(data[16:]))
	if psize == 1 {
		psize = 65536
	}
	if psize < 512 || psize&(psize-1) != 0 {
		return nil, fmt.Errorf("sqlite: page size %d out of range", psize)
	}
	usable := psize - int(data[20])
	if usable < 480 {
		return nil, fmt.Errorf("sqlite: usable page size %d too small", usable)
	}
	if enc := binary.BigEndian.Uint32(data[56:]); enc > 1 {
		return nil, fmt.Errorf("sqlite: text encoding %d not supported", enc)
	}
	return &sqliteDB{data: data, psize: psize, usable: usable, pages: len(data) / psize}, nil
}

func (db *sqliteDB) page(n uint32) ([]byte, error) {
	if n < 1 || int(n) > db.pages {
		return nil, fmt.Errorf("sqlite: page %d outside the file (%d pages)", n, db.pages)
	}
	return db.data[int(n-1)*db.psize : int(n)*db.psize], nil
}

// rows calls fn with the payload of each row of the table b-tree rooted at
// root, in order.
func (db *sqliteDB) rows(root uint32, fn func(payload []byte) error) error {
	seen := map[uint32]bool{}
	var walk func(pg uint32, depth int) error
	walk = func(pg uint32, depth int) error {
		if depth > 32 || seen[pg] {
			return fmt.Errorf("sqlite: b-tree loop or depth over 32 at page %d", pg)
		}
		seen[pg] = true
		p, err := db.page(pg)
		if err != nil {
			return err
		}
		hdr := 0
		if pg == 1 {
			hdr = 100
		}
		if hdr+12 > len(p) {
			return fmt.Errorf("sqlite: page %d too short", pg)
		}
		kind := p[hdr]
		ncells := int(binary.BigEndian.Uint16(p[hdr+3:]))
		hlen := 8
		if kind == 0x05 {
			hlen = 12
		}
		if hdr+hlen+2*ncells > len(p) {
			return fmt.Errorf("sqlite: page %d: %d cells overflow the page", pg, ncells)
		}
		for i := 0; i < ncells; i++ {
			off := int(binary.BigEndian.Uint16(p[hdr+hlen+2*i:]))
			if off >= len(p) {
				return fmt.Errorf("sqlite: page %d: cell %d at %d outside the page", pg, i, off)
			}
			switch kind {
			case 0x05: // interior table page: left child, rowid
				if off+4 > len(p) {
					return fmt.Errorf("sqlite: page %d: truncated cell", pg)
				}
				if err := walk(binary.BigEndian.Uint32(p[off:]), depth+1); err != nil {
					return err
				}
			case 0x0d: // leaf table page: payload size, rowid, payload
				payload, err := db.cellPayload(p, off)
				if err != nil {
					return fmt.Errorf("sqlite: page %d cell %d: %w", pg, i, err)
				}
				if err := fn(payload); err != nil {
					return err
				}
			default:
				return fmt.Errorf("sqlite: page %d has type %#x, want a table b-tree page", pg, kind)
			}
		}
		if kind == 0x05 {
			return walk(binary.BigEndian.Uint32(p[hdr+8:]), depth+1)
		}
		return nil
	}
	return walk(root, 0)
}

func (db *sqliteDB) cellPayload(p []byte, off int) ([]byte, error) {
	size, n := sqliteVarint(p[off:])
	if n == 0 {
		return nil, fmt.Errorf("bad payload size")
	}
	off += n
	_, n = sqliteVarint(p[off:])
	if n == 0 {
		return nil, fmt.Errorf("bad rowid")
	}
	off += n
	if size > rpmMaxData || size > uint64(len(db.data)) {
		return nil, fmt.Errorf("payload of %d bytes over the limit", size)
	}
	u := db.usable
	x := u - 35
	local := int(size)
	if int(size) > x {
		m := (u-12)*32/255 - 23
		k := m + (int(size)-m)%(u-4)
		local = m
		if k <= x {
			local = k
		}
	}
	if off+local > len(p) {
		return nil, fmt.Errorf("payload runs off the page")
	}
	out := make([]byte, 0, size)
	out = append(out, p[off:off+local]...)
	if local == int(size) {
		return out, nil
	}
	if off+local+4 > len(p) {
		return nil, fmt.Errorf("missing overflow pointer")
	}
	next := binary.BigEndian.Uint32(p[off+local:])
	seen := map[uint32]bool{}
	for len(out) < int(size) {
		if next == 0 || seen[next] {
			return nil, fmt.Errorf("overflow chain ends or loops at page %d", next)
		}
		seen[next] = true
		op, err := db.page(next)
		if err != nil {
			return nil, err
		}
		take := min(int(size)-len(out), u-4)
		out = append(out, op[4:4+take]...)
		next = binary.BigEndian.Uint32(op)
	}
	return out, nil
}

// sqliteVarint decodes SQLite's big-endian varint (1-9 bytes); n is 0 on
// a truncated input.
func sqliteVarint(b []byte) (v uint64, n int) {
	for i := 0; i < 9; i++ {
		if i >= len(b) {
			return 0, 0
		}
		if i == 8 {
			return v<<8 | uint64(b[i]), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return v, 9
}

// sqliteRecord splits a record into its column values: nil for NULL,
// the bytes of a blob or text, the big-endian bytes of an integer.
func sqliteRecord(rec []byte) ([][]byte, []uint64, error) {
	hsize, n := sqliteVarint(rec)
	if n == 0 || hsize > uint64(len(rec)) || hsize < uint64(n) {
		return nil, nil, fmt.Errorf("sqlite: bad record header")
	}
	var types []uint64
	for p := n; p < int(hsize); {
		t, k := sqliteVarint(rec[p:int(hsize)])
		if k == 0 {
			return nil, nil, fmt.Errorf("sqlite: bad serial type")
		}
		types = append(types, t)
		p += k
	}
	body := rec[hsize:]
	vals := make([][]byte, len(types))
	for i, t := range types {
		var l int
		switch {
		case t == 0 || t == 8 || t == 9:
			l = 0
		case t <= 4:
			l = int(t)
		case t == 5:
			l = 6
		case t == 6 || t == 7:
			l = 8
		case t >= 12:
			l = int((t - 12) / 2)
		default:
			return nil, nil, fmt.Errorf("sqlite: reserved serial type %d", t)
		}
		if l > len(body) {
			return nil, nil, fmt.Errorf("sqlite: record column %d runs past the record", i)
		}
		vals[i], body = body[:l], body[l:]
	}
	return vals, types, nil
}

// sqliteRPMBlobs returns the header blobs of rpm's Packages table.
func sqliteRPMBlobs(data []byte) ([][]byte, error) {
	db, err := openSQLite(data)
	if err != nil {
		return nil, err
	}
	var root uint32
	err = db.rows(1, func(rec []byte) error {
		vals, types, err := sqliteRecord(rec)
		if err != nil {
			return err
		}
		// sqlite_master: type, name, tbl_name, rootpage, sql
		if len(vals) < 4 || string(vals[0]) != "table" || string(vals[1]) != "Packages" {
			return nil
		}
		if types[3] < 1 || types[3] > 6 {
			return fmt.Errorf("sqlite: Packages rootpage is not an integer")
		}
		var v uint64
		for _, c := range vals[3] {
			v = v<<8 | uint64(c)
		}
		root = uint32(v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if root == 0 {
		return nil, fmt.Errorf("sqlite: no Packages table")
	}
	var out [][]byte
	err = db.rows(root, func(rec []byte) error {
		vals, types, err := sqliteRecord(rec)
		if err != nil {
			return err
		}
		if len(vals) < 2 || types[1] < 12 || types[1]%2 != 0 {
			return fmt.Errorf("sqlite: Packages row without a blob column")
		}
		out = append(out, vals[1])
		if len(out) > rpmMaxPackages {
			return fmt.Errorf("sqlite: more than %d packages", rpmMaxPackages)
		}
		return nil
	})
	return out, err
}
