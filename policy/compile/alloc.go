package compile

import "hash/fnv"

// allocator hands out stable uint32 ids for string keys: the id is derived
// from a hash of the key, probing upwards on collision, so the same key
// gets the same id across compiles unless another live key took it first.
type allocator struct {
	min       uint32
	byKey     map[string]uint32
	used      map[uint32]string
	preferred map[string]uint32 // ids a previous table gave, kept when free
}

func newAllocator(min uint32) *allocator {
	return &allocator{min: min, byKey: map[string]uint32{}, used: map[uint32]string{}}
}

func (a *allocator) assign(key string) uint32 {
	if id, ok := a.byKey[key]; ok {
		return id
	}
	id, ok := a.preferred[key]
	if _, taken := a.used[id]; !ok || taken || id < a.min {
		h := fnv.New32a()
		h.Write([]byte(key))
		id = h.Sum32()
		if id < a.min {
			id += a.min
		}
		for {
			if _, taken := a.used[id]; !taken {
				break
			}
			id++
			if id < a.min {
				id = a.min
			}
		}
	}
	a.byKey[key] = id
	a.used[id] = key
	return id
}

func (a *allocator) release(key string) {
	if id, ok := a.byKey[key]; ok {
		delete(a.byKey, key)
		delete(a.used, id)
	}
}

func (a *allocator) get(key string) (uint32, bool) {
	id, ok := a.byKey[key]
	return id, ok
}
