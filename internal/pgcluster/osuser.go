package pgcluster

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// serverUserName is the OS user PostgreSQL runs as when we are root;
// every distribution package creates it.
const serverUserName = "postgres"

// serverUser is the OS identity initdb and postgres run as.
type serverUser struct {
	name   string
	uid    uint32
	gid    uint32
	groups map[uint32]bool // primary and supplementary groups, for permission checks
}

// lookupServerUser finds the postgres OS user. PostgreSQL refuses to run
// as root, so a root caller has no other way to start it.
func lookupServerUser() (*serverUser, error) {
	u, err := user.Lookup(serverUserName)
	if err != nil {
		return nil, fmt.Errorf("running as root: PostgreSQL refuses to run as root and the OS user %q to run it as was not found "+
			"(installing the postgresql package creates it, or: useradd --system --user-group %s): %w",
			serverUserName, serverUserName, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid %q of OS user %s: %w", u.Uid, serverUserName, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid %q of OS user %s: %w", u.Gid, serverUserName, err)
	}
	su := &serverUser{name: u.Username, uid: uint32(uid), gid: uint32(gid), groups: map[uint32]bool{uint32(gid): true}}
	// Supplementary groups only widen what the permission check accepts;
	// failing to read them just makes the check stricter.
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				su.groups[uint32(n)] = true
			}
		}
	}
	return su, nil
}

// credential runs a child as this user. Groups is set explicitly so the
// child does not keep root's supplementary groups.
func (u *serverUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{u.gid}}
}

// checkTraversable makes sure the server user can reach dir: every folder
// above it needs the search (x) bit for that user. A typical failure is a
// 0700 temporary folder owned by root; we say which folder instead of
// letting initdb fail with a bare "permission denied".
func (u *serverUser) checkTraversable(dir string) error {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	for parent := filepath.Dir(resolved); ; parent = filepath.Dir(parent) {
		fi, err := os.Stat(parent)
		if err != nil {
			return fmt.Errorf("stat %s: %w", parent, err)
		}
		if !u.canSearch(fi) {
			return fmt.Errorf("folder %s (mode %#o) cannot be entered by OS user %s, which runs PostgreSQL because we run as root; "+
				"put the cluster folder %s somewhere %s can reach, or chmod o+x %s",
				parent, fi.Mode().Perm(), u.name, dir, u.name, parent)
		}
		if parent == filepath.Dir(parent) {
			return nil
		}
	}
}

// canSearch applies the classic owner/group/other rule; ACLs are ignored
// because they are rare on the folders involved and a false "no" is
// reported clearly anyway.
func (u *serverUser) canSearch(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let PostgreSQL report the problem
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == u.uid:
		return perm&0o100 != 0
	case u.groups[st.Gid]:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// chownTree hands dir and everything below it to the server user, skipping
// entries it already owns so repeated starts do not rewrite inodes.
func (u *serverUser) chownTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == u.uid && st.Gid == u.gid {
			return nil
		}
		if err := os.Lchown(path, int(u.uid), int(u.gid)); err != nil {
			return fmt.Errorf("chown %s to %s: %w", path, u.name, err)
		}
		return nil
	})
}
