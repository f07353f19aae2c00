// testreport reads the output of `go test -json` (cmd/test2json's events)
// on stdin and writes what `go test` without -v would show: each package's
// result line, the output of failed tests, build errors. Then it lists the
// skipped tests with the reason each gave, and ends with one line:
//
//	N passed, N failed, N skipped
//
// counting tests and subtests (and a package that failed without a failed
// test, such as one that does not build, as one failure). .ci/run runs it as
// `go test -json … | testreport` (built from this file); it exits 1 when a test
// failed or a line was not an event.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (go doc test2json).
type event struct {
	Action, Package, Test, Output, ImportPath string
}

func main() {
	if !report(os.Stdin, os.Stdout) {
		os.Exit(1)
	}
}

// report reads events from in and writes the report to out. It returns
// false when a test failed or a line was not an event.
func report(in io.Reader, out io.Writer) bool {
	counts := map[string]int{}
	failedIn := map[string]int{}    // failed tests, by package
	output := map[string][]string{} // a test's output lines, by package and name
	var skipped []string
	ok := true
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // not an event: go test's own complaint
			ok = false
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "build-output" || e.Test == "" && e.Action == "output":
			fmt.Fprint(out, e.Output)
		case e.Action == "output":
			output[key] = append(output[key], e.Output)
		case e.Test == "" && e.Action == "fail" && failedIn[e.Package] == 0:
			// The package failed with no failed test: it did not build, or
			// its test binary died. Count it, so that the counts say so.
			counts["fail"]++
		case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
			counts[e.Action]++
			if e.Action == "fail" {
				failedIn[e.Package]++
				fmt.Fprint(out, strings.Join(output[key], ""))
			}
			if e.Action == "skip" {
				skipped = append(skipped, fmt.Sprintf("SKIP %s: %s", e.Test, skipReason(output[key])))
			}
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport:", err)
		ok = false
	}
	if len(skipped) > 0 {
		fmt.Fprintf(out, "skipped tests (%d):\n  %s\n", len(skipped), strings.Join(skipped, "\n  "))
	}
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", counts["pass"], counts["fail"], counts["skip"])
	return ok && counts["fail"] == 0
}

// skipReason is what a skipped test logged: its lines other than the
// "=== RUN" and "--- SKIP" markers, joined.
func skipReason(lines []string) string {
	var reason []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- ") {
			reason = append(reason, l)
		}
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " ")
}
