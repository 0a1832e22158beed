package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Task creates are group-committed. A create is small (a task, its steps,
// edges and transitions), and alone it pays a statement, a round trip, a
// commit and a WAL flush of its own; under concurrent API traffic those
// dominate. Creates that arrive while others are being written wait in a
// queue, and each writer takes everything queued (up to maxCreateBatch)
// and writes it with ONE set-based statement (task_create.sql) in one
// transaction, reading the new tasks back in the same round trip when
// asked. An idempotency key behaves exactly as alone: the conflicting
// task's insert is a no-op. If the batch fails as a whole (one bad create
// aborts the statement), each create is retried alone, so one request's
// error never becomes its neighbours'.
const (
	maxCreateBatch = 64
	// One writer: while it writes and commits a batch, the next one
	// gathers, so batches grow with the load and the commit's wait is
	// shared by more creates. Two writers (one batch committing while the
	// next is written) halved the batches, and the database's work per
	// create grew: API workload, alternating runs, 1,686-1,896 creates/s
	// with two against 1,916-2,439 with one, p99 38 -> 33 ms.
	createWriters = 1
)

type createReq struct {
	task     *NewTask
	readBack bool // also read the new task and its steps, in the same pipeline
	done     chan createResult
}

type createResult struct {
	id    uuid.UUID
	err   error // pgx.ErrNoRows: the idempotency key exists
	task  *Task // read back when asked and created
	steps []Step
}

type createBatcher struct {
	s     *Store
	group *groupWriter[*createReq]
}

func newCreateBatcher(s *Store) *createBatcher {
	b := &createBatcher{s: s}
	b.group = newGroupWriter(maxCreateBatch, createWriters, b.writeBatch,
		func(r *createReq, err error) { r.done <- createResult{err: err} }) // translated by inTx
	return b
}

// create writes one task through the queue and returns its id, or
// pgx.ErrNoRows when its idempotency key already exists.
func (b *createBatcher) create(ctx context.Context, t *NewTask, readBack bool) (createResult, error) {
	req := &createReq{task: t, readBack: readBack, done: make(chan createResult, 1)}
	if err := b.group.submit(ctx, req); err != nil {
		return createResult{}, err
	}
	select {
	case r := <-req.done:
		return r, r.err
	case <-ctx.Done():
		// The create may still commit: an idempotency key makes the
		// client's retry safe, as after any lost response.
		return createResult{}, ctx.Err()
	}
}

// createArgs are task_create.sql's parameters for tasks: parallel arrays,
// one element per task, per step and per edge.
func createArgs(tasks []*NewTask) []any {
	var nSteps, nEdges int
	for _, t := range tasks {
		nSteps += len(t.Steps)
		nEdges += len(t.Edges)
	}
	n := len(tasks)
	var (
		taskIDs                      = make([]uuid.UUID, n)
		namedTaskIDs                 = make([]int64, n)
		namespaces, names, versions  = make([]string, n), make([]string, n), make([]string, n)
		contexts, tags               = make([]string, n), make([]string, n)
		initiators, sources, reasons = make([]*string, n), make([]*string, n), make([]*string, n)
		keys, hashes                 = make([]*string, n), make([]*string, n)
		priorities                   = make([]int32, n)
		runAts                       = make([]*time.Time, n)
		correlations, traceparents   = make([]*string, n), make([]*string, n)
		totals, unfinisheds          = make([]int32, n), make([]int32, n)
		actors                       = make([]*string, n)
		taskLimitKeys                = make([]*string, n)
		taskLimitMaxes               = make([]*int32, n)
		stepIDs, stepTasks           = make([]uuid.UUID, 0, nSteps), make([]uuid.UUID, 0, nSteps)
		namedStepIDs                 = make([]int64, 0, nSteps)
		stepNames, handlers, queues  = make([]string, 0, nSteps), make([]string, 0, nSteps), make([]string, 0, nSteps)
		limits, ords, parents        = make([]int32, 0, nSteps), make([]int32, 0, nSteps), make([]int32, 0, nSteps)
		retryable, skippable, bypass = make([]bool, 0, nSteps), make([]bool, 0, nSteps), make([]bool, 0, nSteps)
		inputs                       = make([]*string, 0, nSteps)
		limitKeys, rateKeys          = make([]*string, 0, nSteps), make([]*string, 0, nSteps)
		limitMaxes                   = make([]*int32, 0, nSteps)
		rates                        = make([]*float64, 0, nSteps)
		edgeFrom, edgeTo, edgeTasks  = make([]uuid.UUID, 0, nEdges), make([]uuid.UUID, 0, nEdges), make([]uuid.UUID, 0, nEdges)
	)
	for i, t := range tasks {
		taskIDs[i], namedTaskIDs[i], namespaces[i], names[i], versions[i] = t.TaskID, t.NamedTaskID, t.Namespace, t.Name, t.Version
		contexts[i] = string(t.Context)
		if contexts[i] == "" {
			contexts[i] = "{}"
		}
		tagJSON, _ := json.Marshal(t.Tags) // strings always marshal
		if t.Tags == nil {
			tagJSON = []byte("[]")
		}
		tags[i] = string(tagJSON)
		initiators[i], sources[i], reasons[i] = nullable(t.Initiator), nullable(t.SourceSystem), nullable(t.Reason)
		keys[i], hashes[i] = nullable(t.IdempotencyKey), nullable(t.RequestHash)
		priorities[i], runAts[i] = int32(t.Priority), t.RunAt
		correlations[i], traceparents[i] = nullable(t.CorrelationID), nullable(t.Traceparent)
		totals[i], actors[i] = int32(len(t.Steps)), nullable(t.Actor)
		taskLimitKeys[i], taskLimitMaxes[i] = nullable(t.LimitKey), nullableInt(t.LimitMax)
		for j, st := range t.Steps {
			stepIDs, stepTasks, namedStepIDs = append(stepIDs, st.StepID), append(stepTasks, t.TaskID), append(namedStepIDs, st.NamedStepID)
			stepNames, handlers, queues = append(stepNames, st.Name), append(handlers, st.Handler), append(queues, st.Queue)
			limits, ords, parents = append(limits, int32(st.RetryLimit)), append(ords, int32(j)), append(parents, int32(st.UnfinishedParents))
			retryable, skippable, bypass = append(retryable, st.Retryable), append(skippable, st.Skippable), append(bypass, st.Bypassed)
			var in *string
			if st.Inputs != nil {
				s := string(st.Inputs)
				in = &s
			}
			inputs = append(inputs, in)
			var limitKey, rateKey *string
			var limitMax *int32
			var rate *float64
			if st.LimitKey != "" {
				limitKey, limitMax = &st.LimitKey, new(int32(st.LimitMax))
			}
			if st.RateKey != "" {
				rateKey, rate = &st.RateKey, new(st.RatePerSecond)
			}
			limitKeys, limitMaxes, rateKeys, rates = append(limitKeys, limitKey), append(limitMaxes, limitMax), append(rateKeys, rateKey), append(rates, rate)
			if !st.Bypassed {
				unfinisheds[i]++
			}
		}
		for _, e := range t.Edges {
			edgeFrom, edgeTo, edgeTasks = append(edgeFrom, e.From), append(edgeTo, e.To), append(edgeTasks, t.TaskID)
		}
	}
	return []any{
		taskIDs, namedTaskIDs, namespaces, names, versions, contexts, initiators, sources, reasons, tags,
		keys, hashes, priorities, runAts, correlations, traceparents, totals, unfinisheds, actors,
		taskLimitKeys, taskLimitMaxes,
		stepIDs, namedStepIDs, stepTasks, stepNames, handlers, queues, limits, retryable, skippable, ords, bypass,
		inputs, parents, limitKeys, limitMaxes, rateKeys, rates,
		edgeFrom, edgeTo, edgeTasks,
		tasks[0].Stagger.Microseconds(),
	}
}

//go:embed sql/steps_of_new_tasks.sql
var stepsOfNewTasksSQL string

//go:embed sql/generic_plans.sql
var genericPlansSQL string

// parentNames maps each step of t to its parents' names, sorted, as the
// edges t was written with say (steps_of_tasks.sql reads them back so).
func parentNames(t *NewTask) map[uuid.UUID][]string {
	names := make(map[uuid.UUID]string, len(t.Steps))
	for _, s := range t.Steps {
		names[s.StepID] = s.Name
	}
	parents := make(map[uuid.UUID][]string, len(t.Steps))
	for _, e := range t.Edges {
		parents[e.To] = append(parents[e.To], names[e.From])
	}
	for _, p := range parents {
		slices.Sort(p)
	}
	return parents
}

// writeBatch writes batch in one transaction and answers its creates, or
// returns the error.
func (b *createBatcher) writeBatch(batch []*createReq) error {
	// Not any one requester's context: a client that gives up must not
	// abort its neighbours' creates.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]createResult, len(batch))
	err := b.s.inTx(ctx, "create task", func(tx pgx.Tx) error {
		tasks := make([]*NewTask, len(batch))
		var readIDs []uuid.UUID
		for i, r := range batch {
			tasks[i] = r.task
			results[i] = createResult{err: pgx.ErrNoRows} // until the statement names it: the key exists
			if r.readBack {
				readIDs = append(readIDs, r.task.TaskID)
			}
		}
		index := make(map[uuid.UUID]int, len(batch))
		for i, t := range tasks {
			index[t.TaskID] = i
		}
		var pb pgx.Batch
		pb.Queue(taskCreateSQL, createArgs(tasks)...).Query(func(rows pgx.Rows) error {
			var id uuid.UUID
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				results[index[id]] = createResult{id: id}
				return nil
			})
			return err
		})
		if len(readIDs) > 0 {
			// The read-backs are key lookups whatever the plan, and the
			// tasks' one cost more to plan (a custom plan for every call,
			// 0.15 ms) than to run: generic plans for the rest of this
			// transaction.
			pb.Queue(genericPlansSQL)
			// Read in the same transaction, so the rows are the ones just
			// written; no row for a task whose idempotency key existed.
			pb.Queue(tasksByIDSQL, readIDs).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					t, err := scanTask(rows)
					if err != nil {
						return err
					}
					results[index[t.TaskID]].task = t
				}
				return rows.Err()
			})
			pb.Queue(stepsOfNewTasksSQL, readIDs).Query(func(rows pgx.Rows) error {
				steps, err := pgx.CollectRows(rows, scanStep)
				parents := map[uuid.UUID]map[uuid.UUID][]string{}
				for _, st := range steps {
					i := index[st.TaskID]
					p, ok := parents[st.TaskID]
					if !ok {
						p = parentNames(tasks[i])
						parents[st.TaskID] = p
					}
					st.Parents = p[st.StepID]
					if st.Parents == nil {
						st.Parents = []string{}
					}
					results[i].steps = append(results[i].steps, st)
				}
				return err
			})
		}
		if err := tx.SendBatch(ctx, &pb).Close(); err != nil {
			return err
		}
		for i, r := range batch {
			if r.task.InTx != nil && results[i].err == nil {
				if err := r.task.InTx(ctx, Tx{tx}, results[i].id); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, r := range batch {
		r.done <- results[i]
	}
	return nil
}
