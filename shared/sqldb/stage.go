package sqldb

import "context"

// Stage collects rows that the writes of a batch add and writes them all
// at once, after the last write of the batch has run and just before the
// commit — one statement for many rows instead of one each, and whatever
// the flush locks is held only for the end of the transaction. A write
// that fails takes its staged rows with it. A flush that fails fails the
// batch: every write in it gets the error.
type Stage[T any] struct {
	flush func(ctx context.Context, tx *Tx, items []T) error
}

// NewStage returns a Stage whose rows flush writes, in the order they were
// added, inside the batch's transaction.
func NewStage[T any](flush func(ctx context.Context, tx *Tx, items []T) error) *Stage[T] {
	return &Stage[T]{flush: flush}
}

// Add stages item in tx, to be flushed before tx commits.
func (s *Stage[T]) Add(tx *Tx, item T) {
	tx.staged = append(tx.staged, staged{s, item})
}

func (s *Stage[T]) flushAll(ctx context.Context, tx *Tx, items []any) error {
	ts := make([]T, len(items))
	for i, it := range items {
		ts[i] = it.(T)
	}
	return s.flush(ctx, tx, ts)
}

// flusher is a Stage of any type.
type flusher interface {
	flushAll(ctx context.Context, tx *Tx, items []any) error
}

// staged is one row waiting in a transaction for its stage's flush.
type staged struct {
	stage flusher
	item  any
}

// flushStaged flushes tx's staged rows, stage by stage in the order each
// stage was first used, and empties them.
func (tx *Tx) flushStaged(ctx context.Context) error {
	var order []flusher
	items := map[flusher][]any{}
	for _, s := range tx.staged {
		if _, ok := items[s.stage]; !ok {
			order = append(order, s.stage)
		}
		items[s.stage] = append(items[s.stage], s.item)
	}
	tx.staged = nil
	for _, st := range order {
		if err := st.flushAll(ctx, tx, items[st]); err != nil {
			return err
		}
	}
	return nil
}
