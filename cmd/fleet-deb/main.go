// Command fleet-deb builds fleet's Debian package from built binaries (see
// internal/debpkg); `make deb` runs it and prints the package's path.
//
//	fleet-deb -version 0.2.0 -bin bin -dist dist -out bin -maintainer "Name <addr>"
//
// The package's date is SOURCE_DATE_EPOCH when set (make sets the last
// commit's), else now.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/debpkg"
)

func main() {
	var o debpkg.Options
	flag.StringVar(&o.Version, "version", "", "fleet's semantic version (make version)")
	flag.StringVar(&o.BinDir, "bin", "bin", "directory of the fleetd and fleetctl binaries")
	flag.StringVar(&o.DistDir, "dist", "dist", "the module's dist/ directory")
	flag.StringVar(&o.OutDir, "out", "bin", "directory the .deb is written to")
	flag.StringVar(&o.Maintainer, "maintainer", "", "the package's maintainer, \"Name <address>\"")
	flag.StringVar(&o.Arch, "arch", "amd64", "Debian architecture of the binaries")
	flag.Parse()
	if flag.NArg() > 0 || o.Version == "" {
		fmt.Fprintln(os.Stderr, "usage: fleet-deb -version V [-bin DIR] [-dist DIR] [-out DIR] -maintainer \"Name <address>\"")
		os.Exit(2)
	}
	o.Date = time.Now()
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fleet-deb: SOURCE_DATE_EPOCH %q is not a number of seconds\n", e)
			os.Exit(2)
		}
		o.Date = time.Unix(sec, 0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := debpkg.Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet-deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
