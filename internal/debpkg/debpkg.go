// Package debpkg builds fleet's Debian package, fleet_<version>_<arch>.deb,
// with dpkg-deb: /usr/bin/fleetd and fleetctl, fleet.service and
// fleet.socket (with a drop-in giving the socket to the fleet group) under
// /lib/systemd/system, /etc/fleet/fleet.conf as a conffile, the man pages
// (internal/manpage), bash, zsh and fish completion, and the maintainer
// scripts of dist/debian, which start and enable nothing on installation
// and stop fleetd and the units it started on removal.
//
// dpkg-deb rather than a Go packager (nfpm): it is the tool that defines the
// format, is on every Debian machine the package is for, and adds nothing
// to go.mod; the staging tree it packs is plain files a reviewer can read.
//
// What it leaves to others: building the binaries (make build) and linting
// the package (make deb runs lintian).
package debpkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/manpage"
)

// Options describe the package to build.
type Options struct {
	// Version is fleet's semantic version (make version); the package's is
	// DebianVersion of it.
	Version string
	// BinDir holds the fleetd and fleetctl binaries to package.
	BinDir string
	// DistDir is the module's dist/: fleet.service, fleet.socket,
	// fleet.conf.sample and debian/.
	DistDir string
	// OutDir receives the .deb.
	OutDir string
	// Maintainer is the control file's "Name <address>".
	Maintainer string
	// Arch is the Debian architecture of the binaries (default amd64).
	Arch string
	// Date stamps the man pages, the changelog and every file, so that the
	// same commit builds the same package (make passes the commit's time).
	Date time.Time
}

// ErrBadVersion is returned for a version that is not a semantic version.
var ErrBadVersion = errors.New("not a semantic version")

var semver = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// DebianVersion turns a semantic version into a Debian one that sorts the
// same way: a pre-release sorts before its release in semver, and "~" does
// so in Debian ("0.2.0-dev+g1a2b" is "0.2.0~dev+g1a2b"). Other hyphens
// become dots, since Debian reads the last hyphen as the start of a
// packaging revision.
func DebianVersion(v string) (string, error) {
	if !semver.MatchString(v) {
		return "", fmt.Errorf("version %q: %w", v, ErrBadVersion)
	}
	core, rest, ok := strings.Cut(v, "-")
	if !ok || strings.Contains(core, "+") {
		return v, nil // a release, with build metadata at most
	}
	return core + "~" + strings.ReplaceAll(rest, "-", "."), nil
}

// FileName is the package's file name: fleet_<Debian version>_<arch>.deb.
func FileName(debVersion, arch string) string {
	return "fleet_" + debVersion + "_" + arch + ".deb"
}

// Build stages the package's files and packs them with dpkg-deb into
// OutDir. It returns the package's path.
func Build(ctx context.Context, o Options) (string, error) {
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.Maintainer == "" {
		return "", errors.New("deb: no maintainer (\"Name <address>\") given")
	}
	version, err := DebianVersion(o.Version)
	if err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return "", fmt.Errorf("deb: dpkg-deb is needed (Debian package dpkg): %w", err)
	}
	root, err := os.MkdirTemp("", "fleet-deb-")
	if err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o755); err != nil { // MkdirTemp's 0700 would be the package's /
		return "", fmt.Errorf("deb: %w", err)
	}
	s := &stage{root: root, o: o, version: version}
	for _, step := range []func() error{s.binaries, s.systemd, s.config, s.docs, s.manPages, s.completion, s.control} {
		if err := step(); err != nil {
			return "", fmt.Errorf("deb: %w", err)
		}
	}
	if err := s.stamp(); err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	out := filepath.Join(o.OutDir, FileName(version, o.Arch))
	cmd := exec.CommandContext(ctx, dpkgDeb, "--root-owner-group", "-Zxz", "--build", root, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(o.Date.Unix(), 10))
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("deb: dpkg-deb --build: %w: %s", err, bytes.TrimSpace(b))
	}
	return out, nil
}

// Paths in the package.
const (
	unitDir       = "lib/systemd/system"
	docDir        = "usr/share/doc/fleet"
	bashComp      = "usr/share/bash-completion/completions/fleetctl"
	zshComp       = "usr/share/zsh/vendor-completions/_fleetctl"
	fishComp      = "usr/share/fish/vendor_completions.d/fleetctl.fish"
	lintianDir    = "usr/share/lintian/overrides"
	maintainerDir = "DEBIAN"
)

// stage is the package's tree being built.
type stage struct {
	root    string
	o       Options
	version string
}

func (s *stage) write(rel string, data []byte, mode fs.FileMode) error {
	p := filepath.Join(s.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode) // WriteFile's mode passes through the umask
}

func (s *stage) copy(from, rel string, mode fs.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return s.write(rel, b, mode)
}

func (s *stage) binaries() error {
	for _, name := range []string{"fleetd", "fleetctl"} {
		if err := s.copy(filepath.Join(s.o.BinDir, name), "usr/bin/"+name, 0o755); err != nil {
			return fmt.Errorf("binaries (make build): %w", err)
		}
	}
	return nil
}

func (s *stage) systemd() error {
	for _, name := range []string{"fleet.service", "fleet.socket"} {
		if err := s.copy(filepath.Join(s.o.DistDir, name), unitDir+"/"+name, 0o644); err != nil {
			return err
		}
	}
	return s.copy(filepath.Join(s.o.DistDir, "debian", "fleet-group.conf"), unitDir+"/fleet.socket.d/fleet-group.conf", 0o644)
}

func (s *stage) config() error {
	return s.copy(filepath.Join(s.o.DistDir, "fleet.conf.sample"), "etc/fleet/fleet.conf", 0o644)
}

func (s *stage) docs() error {
	b, err := os.ReadFile(filepath.Join(s.o.DistDir, "debian", "copyright"))
	if err != nil {
		return err
	}
	if err := s.write(docDir+"/copyright", bytes.ReplaceAll(b, []byte("@MAINTAINER@"), []byte(s.o.Maintainer)), 0o644); err != nil {
		return err
	}
	// A native package's changelog: the version and when it was built; the
	// history is the repository's.
	changelog := fmt.Sprintf("fleet (%s) unstable; urgency=medium\n\n  * Built from fleet %s; see the repository's history.\n\n -- %s  %s\n",
		s.version, s.o.Version, s.o.Maintainer, s.o.Date.UTC().Format(time.RFC1123Z))
	gz, err := gzipped([]byte(changelog))
	if err != nil {
		return err
	}
	if err := s.write(docDir+"/changelog.gz", gz, 0o644); err != nil {
		return err
	}
	return s.copy(filepath.Join(s.o.DistDir, "debian", "lintian-overrides"), lintianDir+"/fleet", 0o644)
}

func (s *stage) manPages() error {
	tmp, err := os.MkdirTemp("", "fleet-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	names, err := manpage.Write(tmp, manpage.Options{Version: s.o.Version, Date: s.o.Date})
	if err != nil {
		return err
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(tmp, n))
		if err != nil {
			return err
		}
		gz, err := gzipped(b)
		if err != nil {
			return err
		}
		section := n[strings.LastIndex(n, ".")+1:]
		if err := s.write("usr/share/man/man"+section+"/"+n+".gz", gz, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// completion writes what `fleetctl completion bash|zsh|fish` prints.
func (s *stage) completion() error {
	root := manpage.FleetctlCommand(s.o.Version)
	for rel, gen := range map[string]func(io.Writer) error{
		bashComp: func(w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		zshComp:  root.GenZshCompletion,
		fishComp: func(w io.Writer) error { return root.GenFishCompletion(w, true) },
	} {
		var b bytes.Buffer
		if err := gen(&b); err != nil {
			return fmt.Errorf("completion %s: %w", rel, err)
		}
		if err := s.write(rel, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// control writes DEBIAN/: control (with the installed size), conffiles,
// md5sums and the maintainer scripts.
func (s *stage) control() error {
	var size int64
	var sums []string
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		size += (info.Size() + 1023) / 1024
		if strings.HasPrefix(rel, "etc/") {
			return nil // conffiles: dpkg keeps their sums itself
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sums = append(sums, fmt.Sprintf("%x  %s", md5.Sum(b), rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(sums)
	debian := filepath.Join(s.o.DistDir, "debian")
	tmpl, err := os.ReadFile(filepath.Join(debian, "control"))
	if err != nil {
		return err
	}
	control := strings.NewReplacer("@VERSION@", s.version, "@ARCH@", s.o.Arch,
		"@MAINTAINER@", s.o.Maintainer, "@INSTALLED_SIZE@", strconv.FormatInt(size, 10)).Replace(string(tmpl))
	if err := s.write(maintainerDir+"/control", []byte(control), 0o644); err != nil {
		return err
	}
	if err := s.write(maintainerDir+"/md5sums", []byte(strings.Join(sums, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := s.copy(filepath.Join(debian, "conffiles"), maintainerDir+"/conffiles", 0o644); err != nil {
		return err
	}
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		if err := s.copy(filepath.Join(debian, script), maintainerDir+"/"+script, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// stamp gives every file and directory the package's date.
func (s *stage) stamp() error {
	return filepath.WalkDir(s.root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, s.o.Date, s.o.Date)
	})
}

// gzipped compresses b as Debian wants man pages and changelogs: best
// compression, no name or time in the header (gzip -9n).
func gzipped(b []byte) ([]byte, error) {
	var out bytes.Buffer
	w, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
