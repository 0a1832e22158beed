// Package deploy_test keeps the deployment files (deploy/, the root
// Dockerfile) in step with the server: probe paths and ports, the settings
// they set, the metrics they query. Docker and a cluster are not needed:
// the files are decoded and checked against the settings table, the
// generated OpenAPI document and the telemetry package's metric names.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/taskerd/taskerd/internal/config"
	"github.com/taskerd/taskerd/internal/handler"
	"github.com/taskerd/taskerd/internal/registry"
)

// The routes the manifests rely on, under api.BasePath.
const (
	livePath    = "/tasker/health/live"
	readyPath   = "/tasker/health/ready"
	metricsPath = "/tasker/metrics"
)

// doc is a decoded YAML document with helpers that fail the test on a
// missing or mistyped field, so checks read as paths.
type doc struct {
	t    *testing.T
	name string
	v    any
}

func (d doc) get(path ...any) doc {
	d.t.Helper()
	v := d.v
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				d.t.Fatalf("%s: %v: not a mapping at %q", d.name, path, p)
			}
			if v, ok = m[p]; !ok {
				d.t.Fatalf("%s: %v: no %q", d.name, path, p)
			}
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				d.t.Fatalf("%s: %v: no item %d", d.name, path, p)
			}
			v = l[p]
		}
	}
	return doc{d.t, d.name, v}
}

func (d doc) has(key string) bool {
	m, ok := d.v.(map[string]any)
	_, found := m[key]
	return ok && found
}

func (d doc) str() string {
	d.t.Helper()
	s, ok := d.v.(string)
	if !ok {
		d.t.Fatalf("%s: %v is not a string", d.name, d.v)
	}
	return s
}

func (d doc) num() int {
	d.t.Helper()
	n, ok := d.v.(int)
	if !ok {
		d.t.Fatalf("%s: %v is not an integer", d.name, d.v)
	}
	return n
}

func (d doc) list() []doc {
	d.t.Helper()
	l, ok := d.v.([]any)
	if !ok {
		d.t.Fatalf("%s: %v is not a list", d.name, d.v)
	}
	out := make([]doc, len(l))
	for i, v := range l {
		out[i] = doc{d.t, d.name, v}
	}
	return out
}

func (d doc) strs() []string {
	var out []string
	for _, e := range d.list() {
		out = append(out, e.str())
	}
	return out
}

// readYAML decodes every document of a file.
func readYAML(t *testing.T, path string) []doc {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []doc
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return docs
			}
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc{t, path, v})
	}
}

// settingsOf maps each TASKER_* variable a command reads to its default.
func settingsOf(names []string) map[string]string {
	out := map[string]string{}
	for _, s := range config.Settings {
		if slices.Contains(names, s.Flag) {
			out[s.Env] = s.Default
		}
	}
	return out
}

// checkVariables fails on a TASKER_* variable the command does not read
// (a typo, or a setting that was renamed). TASKER_SECRET_* are template
// secrets (docs/handlers.md), read by name at run time.
func checkVariables(t *testing.T, where string, known map[string]string, names []string) {
	t.Helper()
	for _, n := range names {
		if !strings.HasPrefix(n, "TASKER_") || strings.HasPrefix(n, "TASKER_SECRET_") {
			continue
		}
		if _, ok := known[n]; !ok {
			t.Errorf("%s sets %s, which the command does not read (see internal/config)", where, n)
		}
	}
}

// checkRoutes fails unless the generated OpenAPI document (kept fresh by a
// test of its own) serves every path.
func checkRoutes(t *testing.T, paths ...string) {
	t.Helper()
	raw, err := os.ReadFile("../docs/swagger/swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		BasePath string                     `json:"basePath"`
		Paths    map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, ok := spec.Paths[strings.TrimPrefix(p, spec.BasePath)]; !ok || !strings.HasPrefix(p, spec.BasePath) {
			t.Errorf("the server has no route %s (docs/swagger/swagger.json)", p)
		}
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return p
}

func TestProbeRoutesExist(t *testing.T) {
	t.Parallel()
	checkRoutes(t, livePath, readyPath, metricsPath)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{
		"CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/taskerd"]`,
		`CMD ["serve"]`,
		"ARG VERSION", "ARG COMMIT",
		"-X github.com/taskerd/taskerd/internal/version.Version=${VERSION}",
		"-X github.com/taskerd/taskerd/internal/version.Commit=${COMMIT}",
		"./deploy/probe",
		"EXPOSE " + port(t, settingsOf(config.Server)["TASKER_HTTP_ADDR"]),
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Count(df, "\nFROM ") < 2 {
		t.Error("Dockerfile is not multi-stage")
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ignore), "!deploy/probe") {
		t.Error(".dockerignore must keep deploy/probe, which the image builds")
	}
}

func TestCompose(t *testing.T) {
	t.Parallel()
	docs := readYAML(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services := docs[0].get("services")
	for _, name := range []string{"postgres", "migrate", "taskerd", "prometheus", "jaeger", "grafana"} {
		if !services.has(name) {
			t.Errorf("compose.yaml: no service %s", name)
		}
	}
	envNames := func(svc doc) (names []string, env map[string]string) {
		env = map[string]string{}
		for k, v := range svc.get("environment").v.(map[string]any) {
			names = append(names, k)
			env[k] = fmt.Sprint(v)
		}
		return names, env
	}

	migrate := services.get("migrate")
	if got := migrate.get("command").strs(); !slices.Equal(got, []string{"migrate", "up"}) {
		t.Errorf("migrate runs %v", got)
	}
	names, _ := envNames(migrate)
	checkVariables(t, "compose migrate", settingsOf(config.Migrate), names)

	srv := services.get("taskerd")
	if got := srv.get("command").strs(); !slices.Equal(got, []string{"serve"}) {
		t.Errorf("taskerd runs %v", got)
	}
	serve := settingsOf(config.Server)
	names, env := envNames(srv)
	checkVariables(t, "compose taskerd", serve, names)
	if env["TASKER_AUTH_MODE"] == config.AuthNone && env["TASKER_INSECURE_NO_AUTH"] != "true" {
		t.Error("compose taskerd: auth mode none without TASKER_INSECURE_NO_AUTH: serve would refuse to start")
	}
	addr := env["TASKER_HTTP_ADDR"]
	if addr == "" {
		addr = serve["TASKER_HTTP_ADDR"]
	}
	if ports := srv.get("ports").strs(); !slices.Contains(ports, port(t, addr)+":"+port(t, addr)) {
		t.Errorf("compose taskerd publishes %v, not the listen port %s", ports, port(t, addr))
	}
	if got := srv.get("healthcheck", "test").strs(); !slices.Equal(got, []string{"CMD", "/usr/local/bin/taskerd-probe"}) {
		t.Errorf("compose taskerd healthcheck %v", got)
	}
	if got := srv.get("depends_on", "migrate", "condition").str(); got != "service_completed_successfully" {
		t.Errorf("taskerd starts on migrate %s", got)
	}
	grace, err := time.ParseDuration(srv.get("stop_grace_period").str())
	if err != nil {
		t.Fatal(err)
	}
	if shutdown, _ := time.ParseDuration(env["TASKER_SHUTDOWN_TIMEOUT"]); grace <= shutdown {
		t.Errorf("stop_grace_period %v does not exceed TASKER_SHUTDOWN_TIMEOUT %v", grace, shutdown)
	}

	// Bind mounts name files of this folder.
	for _, svc := range []string{"taskerd", "prometheus", "grafana"} {
		for _, v := range services.get(svc, "volumes").strs() {
			src := strings.Split(v, ":")[0]
			if _, err := os.Stat(src); err != nil {
				t.Errorf("compose %s mounts %s: %v", svc, src, err)
			}
		}
	}
	scrape := readYAML(t, "prometheus/prometheus.yml")[0].get("scrape_configs", 0)
	if got := scrape.get("metrics_path").str(); got != metricsPath {
		t.Errorf("prometheus scrapes %s", got)
	}
	if got := scrape.get("static_configs", 0, "targets").strs(); !slices.Equal(got, []string{"taskerd:" + port(t, addr)}) {
		t.Errorf("prometheus targets %v", got)
	}
}

// manifests decodes the kustomization's resources by kind, and checks that
// no manifest of the folder is left out of it.
func manifests(t *testing.T) map[string]doc {
	t.Helper()
	const dir = "kubernetes"
	k := readYAML(t, filepath.Join(dir, "kustomization.yaml"))[0]
	resources := k.get("resources").strs()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base != "kustomization.yaml" && base != "secret.example.yaml" && !slices.Contains(resources, base) {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
	}
	byKind := map[string]doc{}
	for _, r := range append(resources, "secret.example.yaml") {
		for _, d := range readYAML(t, filepath.Join(dir, r)) {
			kind := d.get("kind").str()
			if _, dup := byKind[kind]; dup {
				t.Fatalf("two %s manifests", kind)
			}
			if !d.has("apiVersion") || !d.get("metadata").has("name") {
				t.Errorf("%s: no apiVersion or metadata.name", r)
			}
			byKind[kind] = d
		}
	}
	for _, g := range k.get("configMapGenerator").list() {
		for _, f := range g.get("files").strs() {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("configMapGenerator: %v", err)
			}
		}
	}
	return byKind
}

// containerEnv lists the variables a container sets, with its ConfigMap's.
func containerEnv(c doc, configMap map[string]string) (names []string, secretKeys []string) {
	if c.has("env") {
		for _, e := range c.get("env").list() {
			names = append(names, e.get("name").str())
			if e.has("valueFrom") && e.get("valueFrom").has("secretKeyRef") {
				secretKeys = append(secretKeys, e.get("valueFrom", "secretKeyRef", "key").str())
			}
		}
	}
	if c.has("envFrom") {
		for k := range configMap {
			names = append(names, k)
		}
	}
	return names, secretKeys
}

func checkSecurity(t *testing.T, where string, pod doc) {
	t.Helper()
	psc := pod.get("securityContext")
	if psc.get("runAsNonRoot").v != true || psc.get("runAsUser").num() == 0 {
		t.Errorf("%s: pod may run as root", where)
	}
	for _, c := range pod.get("containers").list() {
		sc := c.get("securityContext")
		if sc.get("readOnlyRootFilesystem").v != true || sc.get("allowPrivilegeEscalation").v != false || sc.get("runAsNonRoot").v != true {
			t.Errorf("%s: container %s: want a read-only root, no privilege escalation, non-root", where, c.get("name").str())
		}
		if !slices.Equal(sc.get("capabilities", "drop").strs(), []string{"ALL"}) {
			t.Errorf("%s: container %s keeps capabilities", where, c.get("name").str())
		}
		req := c.get("resources", "requests")
		if !req.has("cpu") || !req.has("memory") {
			t.Errorf("%s: container %s has no cpu and memory requests", where, c.get("name").str())
		}
	}
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m := manifests(t)
	for _, kind := range []string{"Deployment", "Service", "Job", "ConfigMap", "Secret", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "ServiceAccount"} {
		if _, ok := m[kind]; !ok {
			t.Fatalf("no %s manifest", kind)
		}
	}
	configMap := map[string]string{}
	for k, v := range m["ConfigMap"].get("data").v.(map[string]any) {
		configMap[k] = v.(string)
	}
	serve := settingsOf(config.Server)
	if configMap["TASKER_AUTH_MODE"] != config.AuthJWT || configMap["TASKER_JWT_ISSUER"] == "" || configMap["TASKER_JWT_AUDIENCE"] == "" {
		t.Errorf("the ConfigMap must select jwt authentication with an issuer and an audience: %v", configMap)
	}
	secretKeys := m["Secret"].get("stringData").v.(map[string]any)

	// The Deployment.
	dep := m["Deployment"]
	pod := dep.get("spec", "template", "spec")
	checkSecurity(t, "Deployment", pod)
	podLabels := dep.get("spec", "template", "metadata", "labels").v.(map[string]any)
	if !reflect.DeepEqual(dep.get("spec", "selector", "matchLabels").v, podLabels) {
		t.Errorf("Deployment selector does not match its pods' labels")
	}
	c := pod.get("containers", 0)
	if got := c.get("args").strs(); !slices.Equal(got, []string{"serve"}) {
		t.Errorf("Deployment runs %v", got)
	}
	names, keys := containerEnv(c, configMap)
	checkVariables(t, "Deployment", serve, names)
	if slices.Contains(names, "TASKER_INSECURE_NO_AUTH") {
		t.Error("Deployment turns authentication off")
	}
	for _, k := range keys {
		if _, ok := secretKeys[k]; !ok {
			t.Errorf("Deployment reads secret key %s, which secret.example.yaml lacks", k)
		}
	}
	listen := port(t, cmpOr(configMap["TASKER_HTTP_ADDR"], serve["TASKER_HTTP_ADDR"]))
	cport := c.get("ports", 0)
	if cport.get("name").str() != "http" || fmt.Sprint(cport.get("containerPort").num()) != listen {
		t.Errorf("container port %v, want http = %s", cport.v, listen)
	}
	for probe, path := range map[string]string{"startupProbe": livePath, "livenessProbe": livePath, "readinessProbe": readyPath} {
		get := c.get(probe, "httpGet")
		if get.get("path").str() != path || get.get("port").str() != "http" {
			t.Errorf("%s: %v, want GET %s on port http", probe, get.v, path)
		}
	}
	shutdown, err := time.ParseDuration(cmpOr(configMap["TASKER_SHUTDOWN_TIMEOUT"], serve["TASKER_SHUTDOWN_TIMEOUT"]))
	if err != nil {
		t.Fatal(err)
	}
	preStop := time.Duration(c.get("lifecycle", "preStop", "sleep", "seconds").num()) * time.Second
	grace := time.Duration(pod.get("terminationGracePeriodSeconds").num()) * time.Second
	if grace <= shutdown+preStop {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the preStop sleep %v plus TASKER_SHUTDOWN_TIMEOUT %v", grace, preStop, shutdown)
	}
	mounts := map[string]string{}
	for _, vm := range c.get("volumeMounts").list() {
		mounts[vm.get("mountPath").str()] = vm.get("name").str()
	}
	if mounts[configMap["TASKER_TEMPLATES_DIR"]] != "templates" {
		t.Errorf("TASKER_TEMPLATES_DIR %s is not the templates volume: %v", configMap["TASKER_TEMPLATES_DIR"], mounts)
	}

	// The migration Job.
	job := m["Job"].get("spec", "template", "spec")
	checkSecurity(t, "Job", job)
	jc := job.get("containers", 0)
	if got := jc.get("args").strs(); !slices.Equal(got, []string{"migrate", "up"}) {
		t.Errorf("Job runs %v", got)
	}
	names, keys = containerEnv(jc, nil)
	checkVariables(t, "Job", settingsOf(config.Migrate), names)
	for _, k := range keys {
		if _, ok := secretKeys[k]; !ok {
			t.Errorf("Job reads secret key %s, which secret.example.yaml lacks", k)
		}
	}

	// Service, PodDisruptionBudget and ServiceMonitor find the pods.
	svc := m["Service"].get("spec")
	if !reflect.DeepEqual(svc.get("selector").v, podLabels) || svc.get("ports", 0, "targetPort").str() != "http" {
		t.Errorf("Service: %v", svc.v)
	}
	if !reflect.DeepEqual(m["PodDisruptionBudget"].get("spec", "selector", "matchLabels").v, podLabels) {
		t.Error("PodDisruptionBudget selects other pods")
	}
	sm := m["ServiceMonitor"].get("spec")
	if !reflect.DeepEqual(sm.get("selector", "matchLabels").v, m["Service"].get("metadata", "labels").v) ||
		sm.get("endpoints", 0, "path").str() != metricsPath || sm.get("endpoints", 0, "port").str() != "http" {
		t.Errorf("ServiceMonitor: %v", sm.v)
	}

	// Compose's Prometheus and the operator's load the same alerts.
	rules := readYAML(t, "prometheus/rules.yml")[0].get("groups").v
	if !reflect.DeepEqual(m["PrometheusRule"].get("spec", "groups").v, rules) {
		t.Error("kubernetes/prometheusrule.yaml and prometheus/rules.yml differ")
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// The sample templates deploy/ ships load on the server.
func TestDeployTemplatesValid(t *testing.T) {
	t.Parallel()
	kinds, err := handler.NewKinds(append(handler.Builtins(), handler.NewSubtask())...)
	if err != nil {
		t.Fatal(err)
	}
	files, err := registry.TemplateFiles("kubernetes/templates")
	if err != nil || len(files) == 0 {
		t.Fatalf("templates: %v %v", files, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := registry.Parse(raw, registry.FormatForFile(f), registry.ParseConfig{Kinds: kinds}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// metricName finds the tasker_ names in PromQL (histogram series suffixes
// removed).
var metricName = regexp.MustCompile(`\btasker_[a-z_]+`)

// TestMetricsExist checks every metric the dashboard and the alerts query
// against the names internal/telemetry and internal/maintenance (the
// leader's gauges) register, read from their source: vectors without
// samples do not show in a scrape.
func TestMetricsExist(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	var srcs []string
	for _, dir := range []string{"telemetry", "maintenance"} {
		files, err := filepath.Glob("../internal/" + dir + "/*.go")
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, files...)
	}
	for _, f := range srcs {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(tasker_[a-z_]+)"`).FindAllStringSubmatch(string(raw), -1) {
			known[m[1]] = true
		}
	}
	if len(known) < 10 {
		t.Fatalf("found only %d metric names in internal/telemetry", len(known))
	}
	var queries []string
	raw, err := os.ReadFile("grafana/taskerd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries = append(queries, tg.Expr)
		}
	}
	for _, g := range readYAML(t, "prometheus/rules.yml")[0].get("groups").list() {
		for _, r := range g.get("rules").list() {
			queries = append(queries, r.get("expr").str())
		}
	}
	used := 0
	for _, q := range queries {
		for _, name := range metricName.FindAllString(q, -1) {
			used++
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("%s is not a metric taskerd exports (query %s)", name, q)
			}
		}
	}
	if used == 0 {
		t.Error("the dashboard and alerts query no taskerd metric")
	}
}
