package pgcluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MinVersion is the oldest PostgreSQL major version the cluster accepts.
const MinVersion = 14

// versionTimeout bounds one `postgres --version` call so a broken binary
// cannot hang FindBinaries, which has no context of its own.
const versionTimeout = 10 * time.Second

// ErrBinariesNotFound reports that no usable PostgreSQL server binaries
// (postgres and initdb, major version MinVersion or newer) were found.
// It is always wrapped in a *BinariesNotFoundError that says what to install.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries not found")

// installHint tells a newcomer exactly how to get the binaries, per platform.
const installHint = "install PostgreSQL 14 or newer " +
	"(Debian/Ubuntu: apt-get install postgresql; " +
	"Fedora/RHEL: dnf install postgresql-server; " +
	"macOS: brew install postgresql@17) " +
	"or set TASKER_PG_BINDIR to the folder holding postgres and initdb"

// Binaries is a folder holding a matching postgres and initdb.
type Binaries struct {
	// Dir is the folder holding postgres and initdb.
	Dir string
	// Version is the major version reported by `postgres --version`, e.g. 15.
	Version int
}

// Postgres returns the path of the postgres server binary.
func (b Binaries) Postgres() string { return filepath.Join(b.Dir, "postgres") }

// Initdb returns the path of the initdb binary.
func (b Binaries) Initdb() string { return filepath.Join(b.Dir, "initdb") }

// BinariesNotFoundError lists where FindBinaries looked and what it rejected,
// so the message says both what is wrong and what to install.
type BinariesNotFoundError struct {
	// Searched holds the folders that were examined, in search order.
	Searched []string
	// Rejected explains, per folder, why a found installation was not usable
	// (too old, version unreadable).
	Rejected []string
}

// Error says what was searched and what to install.
func (e *BinariesNotFoundError) Error() string {
	var b strings.Builder
	b.WriteString(ErrBinariesNotFound.Error())
	if len(e.Searched) > 0 {
		b.WriteString(" (searched ")
		b.WriteString(strings.Join(e.Searched, ", "))
		b.WriteString(")")
	}
	for _, r := range e.Rejected {
		b.WriteString("; ")
		b.WriteString(r)
	}
	b.WriteString(": ")
	b.WriteString(installHint)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrBinariesNotFound) hold.
func (e *BinariesNotFoundError) Unwrap() error { return ErrBinariesNotFound }

// searchPatterns are the usual install locations, newest packaging first.
// Globs because every packager puts the major version in the path.
var searchPatterns = []string{
	"/usr/lib/postgresql/*/bin",          // Debian, Ubuntu
	"/usr/pgsql-*/bin",                   // RHEL, Fedora (PGDG)
	"/opt/homebrew/opt/postgresql@*/bin", // Homebrew on Apple silicon
	"/usr/local/opt/postgresql@*/bin",    // Homebrew on Intel
}

// FindBinaries returns the newest PostgreSQL installation of major version
// MinVersion or newer. With binDir set only that folder is considered;
// otherwise the usual install locations and then PATH are searched.
// The error wraps ErrBinariesNotFound when nothing usable exists.
func FindBinaries(binDir string) (Binaries, error) {
	all, err := findAllBinaries(binDir)
	if err != nil {
		return Binaries{}, err
	}
	return all[0], nil
}

// findAllBinaries returns every usable installation, newest major first
// (ties keep search order), so Start can prefer the major a data folder
// was created with.
func findAllBinaries(binDir string) ([]Binaries, error) {
	var dirs []string
	if binDir != "" {
		dirs = []string{binDir}
	} else {
		dirs = candidateDirs()
	}

	notFound := &BinariesNotFoundError{}
	var found []Binaries
	seen := map[string]bool{}
	for _, dir := range dirs {
		// Symlinked folders (or /usr/local/bin pointing into
		// /usr/lib/postgresql) would otherwise show up twice.
		key := dir
		if resolved, err := filepath.EvalSymlinks(dir); err == nil {
			key = resolved
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		notFound.Searched = append(notFound.Searched, dir)

		if !isExecutable(filepath.Join(dir, "postgres")) || !isExecutable(filepath.Join(dir, "initdb")) {
			continue
		}
		version, err := binaryVersion(filepath.Join(dir, "postgres"))
		if err != nil {
			notFound.Rejected = append(notFound.Rejected, fmt.Sprintf("%s: %v", dir, err))
			continue
		}
		if version < MinVersion {
			notFound.Rejected = append(notFound.Rejected,
				fmt.Sprintf("%s holds PostgreSQL %d, older than %d", dir, version, MinVersion))
			continue
		}
		found = append(found, Binaries{Dir: dir, Version: version})
	}
	if len(found) == 0 {
		if binDir == "" && len(notFound.Searched) == 0 {
			notFound.Searched = append(notFound.Searched, searchPatterns...)
			notFound.Searched = append(notFound.Searched, "PATH")
		}
		return nil, notFound
	}
	slices.SortStableFunc(found, func(a, b Binaries) int { return cmp.Compare(b.Version, a.Version) })
	return found, nil
}

// candidateDirs expands the install locations, then adds the folder of
// postgres on PATH and, when that is a symlink, the folder it points into
// (initdb may only live beside the real binary).
func candidateDirs() []string {
	var dirs []string
	for _, pattern := range searchPatterns {
		matches, _ := filepath.Glob(pattern) // only ErrBadPattern, impossible for constants
		// Glob sorts lexically, so "9" would beat "17"; order by the number
		// so ties between equal majors at least stay deterministic.
		slices.SortFunc(matches, func(a, b string) int { return cmp.Compare(dirMajor(b), dirMajor(a)) })
		dirs = append(dirs, matches...)
	}
	if path, err := exec.LookPath("postgres"); err == nil {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		dirs = append(dirs, filepath.Dir(path))
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			dirs = append(dirs, filepath.Dir(resolved))
		}
	}
	return dirs
}

// dirMajor extracts the first number in a path such as
// /usr/lib/postgresql/15/bin; 0 when there is none.
func dirMajor(dir string) int {
	m := firstNumber.FindString(dir)
	n, _ := strconv.Atoi(m)
	return n
}

var firstNumber = regexp.MustCompile(`[0-9]+`)

// versionPattern matches `postgres (PostgreSQL) 15.4 (Debian ...)` and
// development builds such as `postgres (PostgreSQL) 18beta1`.
var versionPattern = regexp.MustCompile(`\(PostgreSQL\)\s+([0-9]+)`)

// parseVersion returns the major version from `postgres --version` output.
// Before PostgreSQL 10 the major was two numbers (9.6); those are reported
// as their first number, which is below MinVersion either way.
func parseVersion(out string) (int, error) {
	m := versionPattern.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("unrecognised version output %q", strings.TrimSpace(out))
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("unrecognised version output %q: %w", strings.TrimSpace(out), err)
	}
	return n, nil
}

// binaryVersion runs `postgres --version`. That flag is handled before
// postgres refuses to run as root, so it is safe to call from any user.
func binaryVersion(postgres string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), versionTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, postgres, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s --version: %w", postgres, err)
	}
	return parseVersion(string(out))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
