package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/taskerd/taskerd/internal/store"
)

// Problems a template file can have.
const (
	// ProblemConflict: the file differs from what is registered at its
	// version; the registered version stays in use.
	ProblemConflict = "conflict"
	// ProblemInvalid: the file is not a valid template.
	ProblemInvalid = "invalid"
	// ProblemUnreadable: the file or folder could not be read.
	ProblemUnreadable = "unreadable"
)

// FileProblem is a template file that was not registered.
type FileProblem struct {
	File string `json:"file"`
	// Template is "namespace.name@version", when the file got that far.
	Template string `json:"template,omitempty"`
	Problem  string `json:"problem"`
	Message  string `json:"message"`
}

func (p FileProblem) String() string {
	if p.Template != "" {
		return fmt.Sprintf("%s (%s): %s", p.File, p.Template, p.Message)
	}
	return p.File + ": " + p.Message
}

// FileReport is the outcome of registering a templates folder.
type FileReport struct {
	Dir string `json:"dir"`
	// Registered lists the files registered, or already registered as they are.
	Registered []string      `json:"registered"`
	Problems   []FileProblem `json:"problems"`
	LoadedAt   time.Time     `json:"loaded_at"`
}

func (r *FileReport) err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	parts := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		parts[i] = p.String()
	}
	return fmt.Errorf("%d template file(s) in %s not registered; the registered versions stay in use: %s",
		len(r.Problems), r.Dir, strings.Join(parts, "; "))
}

// TemplateFiles lists the template files under dir (.yaml, .yml, .json),
// in lexical order. Hidden files and folders are skipped, which also skips
// the timestamped folders of a Kubernetes ConfigMap volume; symbolic links
// to files are followed.
func TemplateFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		if info, err := os.Stat(path); err != nil || !info.Mode().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	return files, err
}

// LoadDir registers every template file of the templates folder (never
// replacing): the files are the deploy's intent, but a file that differs
// from what is registered at its version must not take the replica down.
// Such files, and invalid ones, are logged and listed in the report, which
// Check turns into a failing readiness check. The error is for failures
// worth retrying (the database); the report is kept either way.
func (r *Registry) LoadDir(ctx context.Context) (*FileReport, error) {
	if r.dir == "" {
		return nil, errors.New("registry: no templates folder configured")
	}
	r.filesMu.Lock()
	defer r.filesMu.Unlock()
	rep := &FileReport{Dir: r.dir, Registered: []string{}, Problems: []FileProblem{}}
	files, err := TemplateFiles(r.dir)
	if err != nil {
		rep.Problems = append(rep.Problems, FileProblem{File: r.dir, Problem: ProblemUnreadable, Message: err.Error()})
	}
	for _, f := range files {
		p, err := r.loadFile(ctx, f)
		if err != nil {
			return nil, err
		}
		if p == nil {
			rep.Registered = append(rep.Registered, f)
			continue
		}
		rep.Problems = append(rep.Problems, *p)
		r.logger.ErrorContext(ctx, "template file not registered", slog.String(logKeyFile, p.File),
			slog.String(logKeyTemplate, p.Template), slog.String("problem", p.Problem), slog.String(logKeyError, p.Message))
	}
	rep.LoadedAt = time.Now().UTC()
	r.mu.Lock()
	r.files = rep
	r.mu.Unlock()
	r.logger.InfoContext(ctx, "templates folder loaded", slog.String("dir", r.dir),
		slog.Int("registered", len(rep.Registered)), slog.Int("problems", len(rep.Problems)))
	return rep, nil
}

// loadFile registers one file. It returns the file's problem, or an error
// when the database failed.
func (r *Registry) loadFile(ctx context.Context, path string) (*FileProblem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return &FileProblem{File: path, Problem: ProblemUnreadable, Message: err.Error()}, nil
	}
	def, err := r.Parse(data, FormatForFile(path))
	if err != nil {
		return &FileProblem{File: path, Problem: ProblemInvalid, Message: err.Error()}, nil
	}
	_, err = r.RegisterDefinition(ctx, def, RegisterOptions{Source: path})
	var ce *ConflictError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &ce):
		return &FileProblem{File: path, Template: def.Template.FullName(), Problem: ProblemConflict,
			Message: fmt.Sprintf("differs from the registered version (registered %s, file %s); bump the version in the file, or register it with replace=true",
				shortHash(ce.RegisteredHash), shortHash(ce.NewHash))}, nil
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrNotMigrated), ctx.Err() != nil:
		return nil, err
	default:
		return &FileProblem{File: path, Template: def.Template.FullName(), Problem: ProblemInvalid, Message: err.Error()}, nil
	}
}

// Files returns the last report of the templates folder; nil before the
// first load.
func (r *Registry) Files() *FileReport {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.files
}
