// Package db holds taskerd's SQL: goose migrations, and the views and
// functions those migrations install. Everything is embedded so the binary
// needs no files at run time.
package db

import "embed"

// FS holds migrations/*.sql, views/*.sql and functions/*.sql.
//
//go:embed migrations/*.sql views/*.sql functions/*.sql
var FS embed.FS
