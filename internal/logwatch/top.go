package logwatch

import (
	"container/heap"
	"sort"
)

// TopSources returns the n sources with the highest scores, highest first.
// It walks the sources once and keeps n of them, so the daemon can publish
// the top scores every few seconds without sorting (and allocating for)
// every source an attack spread over many addresses left in the engine.
func (e *Engine) TopSources(n int) []Source {
	if n <= 0 {
		return nil
	}
	h := make(minScores, 0, min(n, len(e.sources)))
	for s := e.lruHead; s != nil; s = s.next {
		switch {
		case len(h) < n:
			heap.Push(&h, s)
		case s.score > h[0].score:
			h[0] = s
			heap.Fix(&h, 0)
		}
	}
	out := make([]Source, len(h))
	for i, s := range h {
		is4 := s.key.hi == 0 && s.key.lo>>32 == 0xffff
		out[i] = Source{Prefix: e.prefixOf(s.key, is4), Score: s.score, Events: len(s.ev)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	return out
}

// minScores is a min-heap of sources by score.
type minScores []*source

func (h minScores) Len() int           { return len(h) }
func (h minScores) Less(i, j int) bool { return h[i].score < h[j].score }
func (h minScores) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minScores) Push(x any)        { *h = append(*h, x.(*source)) }
func (h *minScores) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
