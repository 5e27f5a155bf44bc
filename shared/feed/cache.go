// The archive page cache: rendered archive pages, most recently used
// first, evicted from the back once their bytes pass Options.CacheBytes.

package feed

func (p *Publisher) cachedArchive(key pageKey) *rendered {
	p.mu.Lock()
	defer p.mu.Unlock()
	if el, ok := p.byKey[key]; ok {
		p.lru.MoveToFront(el)
		return el.Value.(*rendered)
	}
	return nil
}

func (p *Publisher) keep(doc *rendered) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byKey[doc.key]; ok {
		return
	}
	p.byKey[doc.key] = p.lru.PushFront(doc)
	p.cached += doc.size()
	for p.cached > p.opt.CacheBytes && p.lru.Len() > 1 {
		old := p.lru.Remove(p.lru.Back()).(*rendered)
		delete(p.byKey, old.key)
		p.cached -= old.size()
	}
}
