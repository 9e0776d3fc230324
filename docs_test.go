package rtcp_test

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README and docs/ are checked here so that they cannot go stale
// quietly: the layout table against the module's directories, and every
// link between the pages against the files and headings it names.

const layoutPage = "docs/layout.md"

// goDirs returns the module's directories that hold Go files, slash
// separated and relative to the module root ("." for the root), leaving
// out those the go command ignores (testdata, and names that start with
// "." or "_").
func goDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") {
			dir := filepath.ToSlash(filepath.Dir(p))
			if !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// layoutPaths returns the paths the layout table names: every
// backquoted word in the first cell of each row of the first table.
func layoutPaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(layoutPage)
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	var paths []string
	inTable := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the first table ends here
			}
			continue
		}
		cells := strings.Split(line, "|")
		if !inTable || strings.HasPrefix(line, "| ---") {
			inTable = true // the header, then the separator
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			paths = append(paths, strings.TrimSuffix(m[1], "/"))
		}
	}
	if len(paths) == 0 {
		t.Fatalf("%s: no table of paths", layoutPage)
	}
	return paths
}

// TestLayoutTable: every directory of the module that holds Go files is
// in the layout table (the root by at least one of its files), and every
// path the table names exists.
func TestLayoutTable(t *testing.T) {
	named := layoutPaths(t)
	for _, p := range named {
		if _, err := os.Stat(filepath.FromSlash(p)); err != nil {
			t.Errorf("%s names %q, which does not exist: update its row", layoutPage, p)
		}
	}
	for _, dir := range goDirs(t) {
		listed := slices.ContainsFunc(named, func(p string) bool {
			if dir == "." {
				return !strings.Contains(p, "/") && strings.HasSuffix(p, ".go")
			}
			return p == dir
		})
		if !listed {
			t.Errorf("%s has Go files but no row in the table of %s: add one that says what it holds", dir, layoutPage)
		}
	}
}

// TestDocLinks: every relative link of README.md and docs/*.md leads to a
// file that exists, and a link to a heading (#fragment) to a heading of
// that file, as GitHub makes their anchors.
func TestDocLinks(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		text := readProse(t, page)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			if file == "" {
				file = page
			} else {
				file = path.Join(path.Dir(filepath.ToSlash(page)), file)
			}
			if _, err := os.Stat(filepath.FromSlash(file)); err != nil {
				t.Errorf("%s links to %q: no file %s", page, target, file)
				continue
			}
			if frag != "" && strings.HasSuffix(file, ".md") && !slices.Contains(anchors(readProse(t, file)), frag) {
				t.Errorf("%s links to %q: %s has no heading with that anchor", page, target, file)
			}
		}
	}
}

// readProse returns a Markdown file without its fenced code blocks, where
// neither links nor headings are.
func readProse(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	var prose []string
	inCode := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if !inCode {
			prose = append(prose, line)
		}
	}
	return strings.Join(prose, "\n")
}

// anchors returns the anchors GitHub gives the headings of a Markdown
// text: lower case, spaces to hyphens, punctuation other than hyphens and
// underscores dropped.
func anchors(text string) []string {
	var as []string
	for line := range strings.SplitSeq(text, "\n") {
		h := strings.TrimLeft(line, "#")
		if len(h) == len(line) || !strings.HasPrefix(h, " ") {
			continue
		}
		var a strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r > 127:
				a.WriteRune(r)
			}
		}
		as = append(as, a.String())
	}
	return as
}
