// testreport reads the output of `go test -json` (cmd/test2json's events)
// on stdin and writes what `go test` without -v would show: each package's
// result line, the output of failed tests, build errors. Then it lists the
// skipped tests with the reason each gave, and ends with one line:
//
//	N passed, N failed, N skipped
//
// counting tests and subtests. .ci/run runs it as
// `go test -json … | testreport` (built from this file); it exits 1 when a test
// failed or a line was not an event.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// event is one line of `go test -json` (go doc test2json).
type event struct {
	Action, Package, Test, Output, ImportPath string
}

func main() {
	counts := map[string]int{}
	output := map[string][]string{} // a test's output lines, by package and name
	var skipped []string
	bad := false
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for in.Scan() {
		var e event
		if err := json.Unmarshal(in.Bytes(), &e); err != nil {
			fmt.Println(in.Text()) // not an event: go test's own complaint
			bad = true
			continue
		}
		key := e.Package + " " + e.Test
		switch {
		case e.Action == "build-output" || e.Test == "" && e.Action == "output":
			fmt.Print(e.Output)
		case e.Action == "output":
			output[key] = append(output[key], e.Output)
		case e.Action == "pass" || e.Action == "fail" || e.Action == "skip":
			if e.Test == "" {
				continue // the package's result, printed from its output
			}
			counts[e.Action]++
			if e.Action == "fail" {
				fmt.Print(strings.Join(output[key], ""))
			}
			if e.Action == "skip" {
				skipped = append(skipped, fmt.Sprintf("SKIP %s: %s", e.Test, skipReason(output[key])))
			}
			delete(output, key)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Println("testreport:", err)
		bad = true
	}
	if len(skipped) > 0 {
		fmt.Printf("skipped tests (%d):\n  %s\n", len(skipped), strings.Join(skipped, "\n  "))
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", counts["pass"], counts["fail"], counts["skip"])
	if bad || counts["fail"] > 0 {
		os.Exit(1)
	}
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
