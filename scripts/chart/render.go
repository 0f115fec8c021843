// render: renders a Helm chart the way `helm template` does, for machines
// without helm. Go text/template + Sprig, plus the few things Helm adds that
// Herald's chart uses: include, tpl, required, fail, toYaml, fromYaml, toJson,
// lookup, .Files, .Release, .Chart, .Capabilities, .Template. It does not
// validate values against values.schema.json (the chart's tests do that).
//
// Build (Debian 12): apt-get install -y golang-1.19-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
//
//	GO111MODULE=off GOPATH=/usr/share/gocode /usr/lib/go-1.19/bin/go build -o render scripts/chart/render.go
//
// Use: render --chart charts/herald --release herald --namespace herald [-f values.yaml]... [--set a.b=c]...
//
//	[--kube-version 1.30.0] [--api-versions monitoring.coreos.com/v1]... [--lookup existing.yaml] [--is-upgrade] [--notes]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var files, sets, apis multi
	chartDir := flag.String("chart", "charts/herald", "chart directory")
	release := flag.String("release", "herald", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "1.30.0", "Kubernetes version for .Capabilities")
	lookupFile := flag.String("lookup", "", "YAML file of existing objects that lookup finds")
	upgrade := flag.Bool("is-upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	flag.Var(&files, "f", "values file (repeatable)")
	flag.Var(&sets, "set", "value override a.b=c (repeatable)")
	flag.Var(&apis, "api-versions", "extra API version for .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	out, err := render(*chartDir, *release, *namespace, *kube, *lookupFile, *upgrade, *notes, files, sets, apis)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}

func render(dir, release, ns, kube, lookupFile string, upgrade, notes bool, files, sets, apis []string) (string, error) {
	chart, err := loadChart(dir)
	if err != nil {
		return "", err
	}
	values, err := readYAMLFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range files {
		v, err := readYAMLFile(f)
		if err != nil {
			return "", err
		}
		values = merge(values, v)
	}
	for _, s := range sets {
		if err := setValue(values, s); err != nil {
			return "", err
		}
	}
	existing, err := loadObjects(lookupFile)
	if err != nil {
		return "", err
	}
	name := chart["Name"].(string)
	tmpls, chartFiles, err := loadFiles(dir, name)
	if err != nil {
		return "", err
	}
	kv := strings.TrimPrefix(kube, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return "", fmt.Errorf("--kube-version %q: want major.minor.patch", kube)
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Files":  chartFiles,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": ns, "Service": "Helm",
			"IsInstall": !upgrade, "IsUpgrade": upgrade, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + kv, "GitVersion": "v" + kv, "Major": parts[0], "Minor": parts[1],
			},
			"APIVersions": apiVersions(append(builtinAPIs, apis...)),
		},
	}

	t := template.New("chart").Option("missingkey=zero")
	t.Funcs(funcs(t, existing))
	names := make([]string, 0, len(tmpls))
	for n, body := range tmpls {
		if _, err := t.New(n).Parse(body); err != nil {
			return "", err
		}
		names = append(names, n)
	}
	sort.Strings(names)

	var out strings.Builder
	for _, n := range names {
		base := path.Base(n)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": name + "/templates"}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, n, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notes {
			out.WriteString(text)
			continue
		}
		for _, doc := range splitDocs(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, doc)
		}
	}
	return out.String(), nil
}

// Built-in API groups, as `helm template` assumes without a cluster.
var builtinAPIs = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
	"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "storage.k8s.io/v1",
	"apiextensions.k8s.io/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1",
}

type apiVersions []string

// Has reports whether the API version (or group/version/Kind) is known.
func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

// files is .Files: every chart file outside templates/, keyed by path.
type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }
func (f files) Lines(name string) []string  { return strings.Split(string(f[name]), "\n") }
func (f files) Glob(pattern string) files {
	out := files{}
	for n, b := range f {
		if ok, _ := path.Match(pattern, n); ok {
			out[n] = b
		}
	}
	return out
}

// AsConfig renders the files as a ConfigMap `data` body keyed by base name.
func (f files) AsConfig() string {
	m := map[string]interface{}{}
	for n, b := range f {
		m[path.Base(n)] = string(b)
	}
	return toYAML(m)
}

func funcs(t *template.Template, existing []map[string]interface{}) template.FuncMap {
	fm := sprig.TxtFuncMap()
	delete(fm, "env")
	delete(fm, "expandenv")
	fm["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	fm["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		nt, err := c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = nt.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	fm["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	fm["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	fm["toYaml"] = toYAML
	fm["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	fm["toJson"] = func(v interface{}) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	fm["lookup"] = func(apiVersion, kind, ns, name string) map[string]interface{} {
		var items []interface{}
		for _, o := range existing {
			meta, _ := o["metadata"].(map[string]interface{})
			if o["apiVersion"] != apiVersion || o["kind"] != kind || (ns != "" && meta["namespace"] != ns) {
				continue
			}
			if name == "" {
				items = append(items, o)
			} else if meta["name"] == name {
				return o
			}
		}
		if name == "" {
			return map[string]interface{}{"items": items}
		}
		return map[string]interface{}{}
	}
	return fm
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a rendered file into YAML documents, dropping empty ones.
func splitDocs(text string) []string {
	var docs []string
	for _, d := range docSep.Split(text, -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			l := strings.TrimSpace(line)
			if l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, strings.Trim(d, "\n"))
		}
	}
	return docs
}

// loadChart reads Chart.yaml into the capitalised fields of Helm's .Chart.
func loadChart(dir string) (map[string]interface{}, error) {
	raw, err := readYAMLFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chart := map[string]interface{}{}
	for k, v := range raw {
		if k == "apiVersion" {
			k = "APIVersion"
		} else {
			k = strings.ToUpper(k[:1]) + k[1:]
		}
		chart[k] = v
	}
	if _, ok := chart["Name"].(string); !ok {
		return nil, errors.New("Chart.yaml: name is missing")
	}
	return chart, nil
}

// loadFiles returns the templates (keyed "<chart>/templates/...") and .Files.
func loadFiles(dir, name string) (map[string]string, files, error) {
	tmpls := map[string]string{}
	all := files{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			tmpls[name+"/"+rel] = string(b)
		} else {
			all[rel] = b
		}
		return nil
	})
	return tmpls, all, err
}

func readYAMLFile(p string) (map[string]interface{}, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return normalise(m).(map[string]interface{}), nil
}

// normalise turns YAML numbers into float64, as Helm's JSON round trip does.
func normalise(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = normalise(e)
		}
	case []interface{}:
		for i, e := range x {
			x[i] = normalise(e)
		}
	case int:
		return float64(x)
	}
	return v
}

func loadObjects(p string) ([]map[string]interface{}, error) {
	if p == "" {
		return nil, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var objs []map[string]interface{}
	dec := yaml.NewDecoder(f)
	for {
		o := map[string]interface{}{}
		if err := dec.Decode(&o); err != nil {
			if err.Error() == "EOF" {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if len(o) > 0 {
			objs = append(objs, normalise(o).(map[string]interface{}))
		}
	}
}

// merge overlays src on dst (maps deep, everything else replaced; null deletes).
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = merge(dm, sm)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// setValue applies one --set a.b=c: true/false/null and integers are typed,
// {x,y} is a list, anything else a string.
func setValue(values map[string]interface{}, s string) error {
	eq := strings.IndexByte(s, '=')
	if eq < 1 {
		return fmt.Errorf("--set %q: want key=value", s)
	}
	keys := strings.Split(s[:eq], ".")
	raw := s[eq+1:]
	var v interface{} = raw
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		v = n
	} else if raw == "true" || raw == "false" {
		v = raw == "true"
	} else if raw == "null" {
		v = nil
	} else if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
		list := []interface{}{}
		for _, e := range strings.Split(raw[1:len(raw)-1], ",") {
			if e != "" {
				list = append(list, e)
			}
		}
		v = list
	}
	m := values
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[k] = next
		}
		m = next
	}
	last := keys[len(keys)-1]
	if v == nil {
		delete(m, last)
	} else {
		m[last] = v
	}
	return nil
}
