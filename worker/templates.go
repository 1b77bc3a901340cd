package worker

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-go/tasker/template"
)

// RegisterTemplates stores each template in named_tasks (as tasker-core's worker does at start),
// one transaction per template so a bad one names itself and leaves the others in place.
func RegisterTemplates(ctx context.Context, pool *pgxpool.Pool, tmpls []*template.TaskTemplate) error {
	for _, t := range tmpls {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := template.Register(ctx, tx, t)
			return err
		}); err != nil {
			return fmt.Errorf("register template %s: %w", t.Key(), err)
		}
	}
	return nil
}

// LoadAndRegisterTemplates loads every template under dir, registers them, and returns the
// sorted set of their namespaces. Invalid templates fail the whole load with every problem
// named (file and field); nothing is registered then.
func LoadAndRegisterTemplates(ctx context.Context, pool *pgxpool.Pool, dir string) ([]*template.TaskTemplate, []string, error) {
	tmpls, err := template.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := RegisterTemplates(ctx, pool, tmpls); err != nil {
		return nil, nil, err
	}
	var nss []string
	for _, t := range tmpls {
		if !slices.Contains(nss, t.NamespaceName) {
			nss = append(nss, t.NamespaceName)
		}
	}
	slices.Sort(nss)
	return tmpls, nss, nil
}
