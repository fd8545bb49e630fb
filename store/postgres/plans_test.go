package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/rendezvous-p2p/rendezvous/store/postgres"
)

// TestWriterPlansUseIndexes: the plan a statement keeps is the generic plan
// made once for all, possibly while the table was empty (a new schema, a
// point's first batches). Made so, with what a writer's transaction sets
// first, the writer's statements find a batch's rows through the primary
// key, not by scanning the whole table at every batch.
func TestWriterPlansUseIndexes(t *testing.T) {
	t.Parallel()
	dsn, schema := newSchema(t)
	open(t, dsn, schema) // creates the tables, empty
	ctx := context.Background()
	tx := beginTx(t, dsn)
	for _, q := range []string{`SET LOCAL search_path = ` + schema, `SET LOCAL plan_cache_mode = force_generic_plan`, postgres.IndexPlans} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	for q, params := range postgres.WriterStatements {
		i++
		name := fmt.Sprintf("writer_%d", i)
		if _, err := tx.Exec(ctx, `PREPARE `+name+` AS `+q); err != nil {
			t.Fatal(err)
		}
		args := make([]string, params)
		for j := range args {
			args[j] = "NULL"
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE `+name+`(`+strings.Join(args, ", ")+`)`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "rendezvous_registrations_pkey") || strings.Contains(plan, "Seq Scan on rendezvous_registrations") {
			t.Errorf("generic plan of\n%s\ndoes not look rows up by key:\n%s", q, plan)
		}
	}
}
