package main

import (
	"strings"
	"testing"
)

// TestReport: the report shows a failed test's output, lists each skipped
// test with its reason, and ends with the counts of tests and subtests.
func TestReport(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestB","Output":"=== RUN   TestB\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: AZURITE_TABLE_URL is unset\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestC/sub","Output":"    c_test.go:3: got 1; want 2\n"}
{"Action":"fail","Package":"p","Test":"TestC/sub"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.1s\n"}
{"Action":"fail","Package":"p"}
`
	var out strings.Builder
	ok := report(strings.NewReader(in), &out)
	got := out.String()
	for _, want := range []string{
		"c_test.go:3: got 1; want 2",
		"FAIL\tp\t0.1s",
		"SKIP TestB: b_test.go:9: AZURITE_TABLE_URL is unset\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if !strings.HasSuffix(got, "\n1 passed, 2 failed, 1 skipped\n") || ok {
		t.Errorf("report ends %q, ok %v; want the counts last, and not ok:\n%s", got[strings.LastIndex(got[:len(got)-1], "\n")+1:], ok, got)
	}
	if strings.Contains(got, "=== RUN") {
		t.Errorf("report shows a passing test's output:\n%s", got)
	}
}

// TestReportBuildFailure: a package that does not build counts as a failure.
func TestReportBuildFailure(t *testing.T) {
	in := `{"ImportPath":"p [p.test]","Action":"build-output","Output":"./x.go:3:1: syntax error\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}
{"Action":"fail","Package":"p"}
`
	var out strings.Builder
	if report(strings.NewReader(in), &out) || !strings.HasSuffix(out.String(), "0 passed, 1 failed, 0 skipped\n") ||
		!strings.Contains(out.String(), "syntax error") {
		t.Errorf("report of a build failure:\n%s", out.String())
	}
}
