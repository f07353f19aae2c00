package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pieces are the parts of the service a reader can copy into a module of
// their own (README, "Taking a piece"): each starts from a few files and
// must build with the files the compiler then asks for, within a file and
// line budget, and without the files it must never need.
var pieces = []struct {
	name     string
	start    []string
	maxFiles int
	maxLines int // 0: no limit
	never    []string
}{
	{
		name:     "resource server",
		start:    []string{"jwks.go", "bearer.go"},
		maxFiles: 8,
		maxLines: 1800,
		never: []string{"main.go", "env.go", "auth.go", "session.go", "credentials.go", "middleware.go",
			"heroes.go", "heroes_decode.go", "heroes_store.go", "devidp.go", "tablestore.go", "openapi.go"},
	},
	{
		name:     "login",
		start:    []string{"auth.go"},
		maxFiles: 10,
		never:    []string{"main.go", "heroes.go", "heroes_decode.go", "heroes_store.go", "devidp.go", "tablestore.go", "openapi.go"},
	},
	{
		name:     "heroes",
		start:    []string{"heroes.go"},
		maxFiles: 10,
		never:    []string{"main.go", "auth.go", "jwks.go", "devidp.go", "session.go", "credentials.go", "openapi.go"},
	},
	{
		name:     "shared helpers",
		start:    []string{"shared.go"},
		maxFiles: 1,
	},
}

// TestPiecesBuildAlone copies each piece's starting files into an empty
// module with a stub main, then adds the file defining whatever the compiler
// reports undefined until the module builds, as a reader taking that piece
// would. It fails when a piece needs a file it must never need, or more
// files or lines than its budget.
func TestPiecesBuildAlone(t *testing.T) {
	goBin := goForBuilds(t)
	defs := topLevelDefinitions(t)
	for _, p := range pieces {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			files, why := assemblePiece(t, goBin, defs, p.start, stubMain)
			lines := 0
			for _, f := range files {
				lines += countLines(t, f)
			}
			t.Logf("%s piece: %d files, %d lines: %s", p.name, len(files), lines, strings.Join(files, " "))
			for _, f := range files {
				if slices.Contains(p.never, f) {
					t.Errorf("the %s piece needs %s (for %s), which it must never need", p.name, f, why[f])
				}
			}
			if len(files) > p.maxFiles {
				t.Errorf("the %s piece has %d files; at most %d", p.name, len(files), p.maxFiles)
			}
			if p.maxLines > 0 && lines > p.maxLines {
				t.Errorf("the %s piece has %d lines; at most %d", p.name, lines, p.maxLines)
			}
		})
	}
}

// readmeExamples are README's example mains ("Taking a piece"), each after
// an <!-- example: name --> line, with the files its build starts from and
// those it must never need.
var readmeExamples = map[string]struct{ start, never []string }{
	"resource server": {[]string{"jwks.go", "bearer.go"}, pieces[0].never},
	"login":           {[]string{"auth.go"}, pieces[1].never},
	"heroes with bearer tokens": {[]string{"heroes.go", "bearer.go"},
		[]string{"main.go", "env.go", "auth.go", "session.go", "credentials.go", "middleware.go", "devidp.go", "openapi.go"}},
}

// TestReadmeExamplesBuild builds each of README's example mains as the main
// of a module holding its piece's files, as TestPiecesBuildAlone assembles
// them, so that the examples a reader copies compile.
func TestReadmeExamplesBuild(t *testing.T) {
	goBin := goForBuilds(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := regexp.MustCompile("(?s)<!-- example: ([a-z ]+) -->\n```go\n(.*?)```\n").FindAllStringSubmatch(string(readme), -1)
	if len(found) != len(readmeExamples) {
		t.Fatalf("README has %d example mains; want %d (%v)", len(found), len(readmeExamples), slices.Collect(maps.Keys(readmeExamples)))
	}
	defs := topLevelDefinitions(t)
	for _, m := range found {
		ex, ok := readmeExamples[m[1]]
		if !ok {
			t.Errorf("README's example %q is not in readmeExamples", m[1])
			continue
		}
		t.Run(m[1], func(t *testing.T) {
			t.Parallel()
			files, why := assemblePiece(t, goBin, defs, ex.start, m[2])
			for _, f := range files {
				if slices.Contains(ex.never, f) {
					t.Errorf("README's example %q needs %s (for %s)", m[1], f, why[f])
				}
			}
		})
	}
}

// goForBuilds is the go command that builds pieces in modules of their
// own; the test skips with -short or when there is none on PATH.
func goForBuilds(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds pieces in modules of their own; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the pieces with")
	}
	return goBin
}

// TestReadmeListsEveryFile: README's "Where things are" names every non-test
// Go file of the service.
func TestReadmeListsEveryFile(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start, end := strings.Index(text, "## Where things are"), strings.Index(text, "## Taking a piece")
	if start < 0 || end < start {
		t.Fatal("README has no \"Where things are\" section before \"Taking a piece\"")
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") && !strings.Contains(text[start:end], "`"+f+"`") {
			t.Errorf("README's \"Where things are\" does not list %s", f)
		}
	}
}

// undefinedPattern matches the compiler's reports of a missing package-level
// name and of a missing method.
var undefinedPattern = regexp.MustCompile(`undefined: (\w+)|type \*?(\w+) has no field or method (\w+)`)

// stubMain is the main of a piece built alone.
const stubMain = "package main\n\nfunc main() {}\n"

// assemblePiece builds start (plus mainSrc, a file holding main) in a fresh
// module, adding the defining file of each undefined name, and returns the
// files it ended with and, for each file added, the name it was added for.
// main.go is never copied (its main would clash with mainSrc's): a piece
// that needs it fails.
func assemblePiece(t *testing.T, goBin string, defs map[string]string, start []string, mainSrc string) ([]string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module piece\n\ngo 1.26\n")
	write("zz_stub_main.go", mainSrc)
	files, why := []string{}, map[string]string{}
	add := func(f string) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		write(f, string(data))
		files = append(files, f)
	}
	for _, f := range start {
		add(f)
	}
	for range 40 {
		cmd := exec.Command(goBin, "build", "-gcflags=-e", "-o", os.DevNull, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err == nil {
			slices.Sort(files)
			return files, why
		}
		added := false
		for _, m := range undefinedPattern.FindAllStringSubmatch(string(out), -1) {
			name := m[1]
			if name == "" {
				name = m[2] + "." + m[3]
			}
			f, ok := defs[name]
			if !ok {
				t.Fatalf("%s is undefined and no file of the service defines it:\n%s", name, out)
			}
			if f == "main.go" {
				t.Fatalf("the piece %v needs %s from main.go", files, name)
			}
			if !slices.Contains(files, f) {
				add(f)
				why[f] = name
				added = true
			}
		}
		if !added {
			t.Fatalf("the piece %v does not build, and not for want of a file:\n%s", files, out)
		}
	}
	t.Fatalf("the piece %v did not settle", files)
	return nil, nil
}

// topLevelDefinitions maps every package-level name (and Type.method) of
// the service's non-test files that build on this platform to the file defining it.
func topLevelDefinitions(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .GoFiles " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	defs := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range strings.Fields(string(out)) {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			for _, n := range declaredNames(d) {
				defs[n] = name
			}
		}
	}
	return defs
}

// declaredNames lists the names a top-level declaration defines; a method
// is named Type.method.
func declaredNames(d ast.Decl) []string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil {
			return []string{d.Name.Name}
		}
		typ := d.Recv.List[0].Type
		if star, ok := typ.(*ast.StarExpr); ok {
			typ = star.X
		}
		if ix, ok := typ.(*ast.IndexExpr); ok {
			typ = ix.X
		}
		if id, ok := typ.(*ast.Ident); ok {
			return []string{id.Name + "." + d.Name.Name}
		}
	case *ast.GenDecl:
		var out []string
		for _, s := range d.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				out = append(out, s.Name.Name)
			case *ast.ValueSpec:
				for _, n := range s.Names {
					out = append(out, n.Name)
				}
			}
		}
		return out
	}
	return nil
}

// countLines is wc -l of file.
func countLines(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}
