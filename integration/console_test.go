package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/tasker-go/tasker/api"
	"github.com/tasker-go/tasker/console"
	"github.com/tasker-go/tasker/handlers"
	"github.com/tasker-go/tasker/integration/testdb"
	"github.com/tasker-go/tasker/state"
	"github.com/tasker-go/tasker/web"
)

// A diamond whose first step blocks or whose last step fails, as the task's context says.
const consoleYAML = `
name: console_flow
namespace_name: console
version: 1.0.0
steps:
  - name: fetch
    handler: {callable: console.fetch}
  - name: left
    dependencies: [fetch]
    handler: {callable: console.work}
  - name: right
    dependencies: [fetch]
    handler: {callable: console.work}
  - name: merge
    dependencies: [left, right]
    handler: {callable: console.merge}
    retry: {retryable: false, max_attempts: 1}
`

// consoleChromium returns the path of a Chromium or Chrome binary, skipping the test when
// there is none.
func consoleChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("console browser test skipped: no chromium, chromium-browser or google-chrome on PATH (apt-get install -y chromium)")
	return ""
}

// consoleBrowser starts a headless browser at width×height and returns its context.
func consoleBrowser(t *testing.T, exe string, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(width, height), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start browser: %v", err)
	}
	return ctx
}

// consoleEval evaluates js in the page and decodes its JSON value into out.
func consoleEval(t *testing.T, ctx context.Context, js string, out any) {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("evaluate %s: decode %s: %v", js, raw, err)
	}
}

// consoleWait polls the boolean expression js until it is true, failing after within.
func consoleWait(t *testing.T, ctx context.Context, what, js string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		consoleEval(t, ctx, "!!("+js+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			consoleEval(t, ctx, "document.getElementById('main').innerText", &html)
			t.Fatalf("%s: not true after %s: %s\npage:\n%s", what, within, js, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// consoleRun runs actions in order, failing the test on the first error; a browser that stops
// answering fails the step within 30 s instead of the whole browser context's deadline.
func consoleRun(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// consoleNodes returns the DAG's nodes as step name → state.
func consoleNodes(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	var nodes map[string]string
	consoleEval(t, ctx, `Object.fromEntries([...document.querySelectorAll('#dag .node')].map(n => [n.dataset.stepName, n.dataset.state]))`, &nodes)
	return nodes
}

// consoleScreenshot saves the page as docs/console/name when TASKER_CONSOLE_SCREENSHOTS=1.
func consoleScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("TASKER_CONSOLE_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "docs", "console", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// consoleNoHorizontalScroll requires the page body and every DAG node to fit the viewport width.
func consoleNoHorizontalScroll(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	var r struct {
		Inner, Doc, Body int
		NodesOut         int
	}
	consoleEval(t, ctx, `({Inner: window.innerWidth, Doc: document.documentElement.scrollWidth, Body: document.body.scrollWidth,
		NodesOut: [...document.querySelectorAll('#dag .node')].filter(n => { const b = n.getBoundingClientRect(); return b.left < 0 || b.right > window.innerWidth; }).length})`, &r)
	if r.Doc > r.Inner || r.Body > r.Inner || r.NodesOut > 0 {
		t.Errorf("%s: page scrolls horizontally: viewport %d, document %d, body %d, DAG nodes outside %d", what, r.Inner, r.Doc, r.Body, r.NodesOut)
	}
}

func TestConsoleInBrowser(t *testing.T) {
	exe := consoleChromium(t)
	_, pool := testdb.New(t)
	orchRegister(t, pool, consoleYAML)

	release, hold := make(chan struct{}), make(chan struct{})
	stopHolding := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(stopHolding)
	mode := func(sc *handlers.StepContext) string {
		raw, _ := sc.Input("mode")
		var m string
		_ = json.Unmarshal(raw, &m)
		return m
	}
	reg := handlers.NewRegistry()
	reg.MustRegister("console.fetch", handlers.HandlerFunc(func(ctx context.Context, sc *handlers.StepContext) handlers.Result {
		switch mode(sc) {
		case "block":
			select {
			case <-release:
			case <-ctx.Done():
				return handlers.Failure("interrupted", "Interrupted", true)
			}
		case "hold":
			select {
			case <-hold:
			case <-ctx.Done():
			}
			return handlers.Failure("held", "Held", true)
		}
		return handlers.Success(map[string]any{"rows": 42}, nil)
	}))
	reg.MustRegister("console.work", handlers.HandlerFunc(func(context.Context, *handlers.StepContext) handlers.Result {
		return handlers.Success(map[string]any{"ok": true}, nil)
	}))
	reg.MustRegister("console.merge", handlers.HandlerFunc(func(_ context.Context, sc *handlers.StepContext) handlers.Result {
		if mode(sc) == "fail" {
			return handlers.Failure("merge rejected the inputs", "MergeRejected", false)
		}
		return handlers.Success(map[string]any{"merged": 2}, nil)
	}))

	o := orchNew(t, pool, nil)
	orchWorker(t, pool, "console", reg)
	orchRun(t, o)
	a, err := api.New(o, pool, api.Options{Logger: orchLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.New(web.Config{Routes: console.Routes(a.Mount), Templates: web.DBTemplates{DB: pool}, Logger: orchLogger()}).Handler())
	t.Cleanup(srv.Close)
	base := srv.URL + console.Path

	create := func(m string) (string, map[string]uuid.UUID) {
		ct := orchCreate(t, o, orchRequest("console", "console_flow", fmt.Sprintf(`{"mode":%q}`, m)))
		return ct.TaskUUID.String(), ct.Steps
	}
	done, doneSteps := create("ok")
	failed, _ := create("fail")
	orchWaitTask(t, pool, uuid.MustParse(done), 20*time.Second, state.TaskComplete)
	orchWaitTask(t, pool, uuid.MustParse(failed), 20*time.Second, state.TaskBlockedByFailures)
	live, liveSteps := create("block")
	held, heldSteps := create("hold")
	orchWaitStep(t, pool, liveSteps["fetch"], 20*time.Second, state.StepInProgress)
	orchWaitStep(t, pool, heldSteps["fetch"], 20*time.Second, state.StepInProgress)

	ctx := consoleBrowser(t, exe, 1280, 800)

	// Overview: counts by state and namespace.
	consoleRun(t, ctx, "overview", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#state-cards")))
	var counts map[string]string
	consoleEval(t, ctx, `Object.fromEntries([...document.querySelectorAll('#state-cards .card')].map(c => [c.dataset.state, c.querySelector('.num').textContent]))`, &counts)
	if counts["complete"] != "1" || counts["blocked_by_failures"] != "1" || counts["steps_in_process"] != "2" {
		t.Errorf("overview state counts %v, want complete 1, blocked_by_failures 1, steps_in_process 2", counts)
	}
	var nsRow string
	consoleEval(t, ctx, `document.querySelector('#ns-table tbody tr').innerText`, &nsRow)
	if f := strings.Fields(nsRow); len(f) != 3 || f[0] != "console" || f[1] != "4" || f[2] != "3" {
		t.Errorf("namespace row %q, want console 4 3", nsRow)
	}
	consoleNoHorizontalScroll(t, ctx, "overview 1280")
	consoleScreenshot(t, ctx, "overview.png")

	// Task list with a filter: links to each task.
	consoleRun(t, ctx, "task list", chromedp.Navigate(base+"#/tasks?namespace=console&status=steps_in_process"),
		chromedp.WaitVisible(chromedp.CSS("#task-table tbody tr[data-task]")))
	var listed []string
	consoleEval(t, ctx, `[...document.querySelectorAll('#task-table tbody tr[data-task]')].map(r => r.dataset.task).sort()`, &listed)
	want := []string{live, held}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if fmt.Sprint(listed) != fmt.Sprint(want) {
		t.Errorf("filtered list %v, want %v", listed, want)
	}
	consoleNoHorizontalScroll(t, ctx, "task list 1280")
	consoleScreenshot(t, ctx, "tasks.png")
	// Pagination: 4 tasks, 3 a page.
	rows := func() (n int) {
		consoleEval(t, ctx, `document.querySelectorAll('#task-table tbody tr[data-task]').length`, &n)
		return n
	}
	consoleRun(t, ctx, "paged list", chromedp.Navigate(base+"#/tasks?namespace=console&per_page=3"), chromedp.WaitVisible(chromedp.CSS("#next")))
	if n := rows(); n != 3 {
		t.Errorf("page 1: %d rows, want 3", n)
	}
	consoleRun(t, ctx, "next page", chromedp.Click(chromedp.CSS("#next")), chromedp.WaitVisible(chromedp.CSS("#prev")))
	consoleWait(t, ctx, "page 2 with one task", `document.querySelectorAll('#task-table tbody tr[data-task]').length === 1 && !document.getElementById('next')`, 5*time.Second)

	// The finished task's DAG: every step with its state, the diamond's four edges, layered.
	consoleRun(t, ctx, "task DAG", chromedp.Navigate(base+"#/tasks/"+done), chromedp.WaitVisible(chromedp.CSS("#dag .node")))
	nodes := consoleNodes(t, ctx)
	if fmt.Sprint(nodes) != "map[fetch:complete left:complete merge:complete right:complete]" {
		t.Errorf("DAG nodes %v", nodes)
	}
	var layout struct {
		Edges int
		Y     map[string]float64
	}
	consoleEval(t, ctx, `({Edges: document.querySelectorAll('#dag path.edge').length,
		Y: Object.fromEntries([...document.querySelectorAll('#dag .node')].map(n => [n.dataset.stepName, n.getBoundingClientRect().top]))})`, &layout)
	if y := layout.Y; layout.Edges != 4 || !(y["fetch"] < y["left"] && y["left"] == y["right"] && y["right"] < y["merge"]) {
		t.Errorf("DAG layout: %d edges, node tops %v; want 4 edges and layers fetch < left = right < merge", layout.Edges, layout.Y)
	}
	consoleNoHorizontalScroll(t, ctx, "task DAG 1280")
	consoleScreenshot(t, ctx, "task-dag.png")

	// Step page: results, attempts, audit rows.
	consoleRun(t, ctx, "step page", chromedp.Navigate(base+"#/tasks/"+done+"/steps/"+doneSteps["fetch"].String()),
		chromedp.WaitVisible(chromedp.CSS("#audit-table")))
	var step struct{ Results, Attempts, Status string }
	var auditRows int
	consoleEval(t, ctx, `({Results: document.getElementById('step-results').textContent, Attempts: document.getElementById('step-attempts').textContent,
		Status: document.querySelector('#step-status .badge').dataset.state})`, &step)
	consoleEval(t, ctx, `document.querySelectorAll('#audit-table tbody tr').length`, &auditRows)
	if !strings.Contains(step.Results, `"rows": 42`) || step.Attempts != "1 of 3" || step.Status != "complete" || auditRows < 1 {
		t.Errorf("step page: %+v, %d audit rows", step, auditRows)
	}
	consoleScreenshot(t, ctx, "step.png")

	// A running task changes state on the page, without reloading it.
	consoleRun(t, ctx, "live task", chromedp.Navigate(base+"#/tasks/"+live), chromedp.WaitVisible(chromedp.CSS("#dag .node")))
	consoleWait(t, ctx, "fetch shown in progress", `document.querySelector('#dag .node[data-step-name="fetch"]').dataset.state === 'in_progress'`, 10*time.Second)
	if n := consoleNodes(t, ctx); n["merge"] != "pending" {
		t.Errorf("live DAG before release: %v", n)
	}
	consoleScreenshot(t, ctx, "task-dag-running.png")
	consoleEval(t, ctx, `window.consoleMarker = 'same page'`, new(string))
	close(release)
	consoleWait(t, ctx, "live task shown complete", `document.querySelector('#task-status .badge').dataset.state === 'complete' &&
		[...document.querySelectorAll('#dag .node')].every(n => n.dataset.state === 'complete')`, 20*time.Second)
	var marker string
	consoleEval(t, ctx, `window.consoleMarker || ''`, &marker)
	if marker != "same page" {
		t.Error("the page reloaded instead of updating in place")
	}

	// Cancel through the UI, with the confirm dialog.
	consoleRun(t, ctx, "cancel", chromedp.Navigate(base+"#/tasks/"+held), chromedp.WaitVisible(chromedp.CSS("#cancel-task")),
		chromedp.Click(chromedp.CSS("#cancel-task")), chromedp.WaitVisible(chromedp.CSS("#confirm[open] #confirm-ok")))
	if st, _ := state.CurrentTaskState(t.Context(), pool, uuid.MustParse(held)); st == state.TaskCancelled {
		t.Fatal("the task was cancelled before the dialog was confirmed")
	}
	consoleRun(t, ctx, "confirm cancel", chromedp.Click(chromedp.CSS("#confirm-ok")))
	consoleWait(t, ctx, "task shown cancelled", `document.querySelector('#task-status .badge').dataset.state === 'cancelled' && !document.getElementById('cancel-task')`, 10*time.Second)
	if st, err := state.CurrentTaskState(t.Context(), pool, uuid.MustParse(held)); err != nil || st != state.TaskCancelled {
		t.Errorf("held task in the database: %s %v", st, err)
	}
	stopHolding()

	// Manual resolution of the failed step through the UI: the blocked task resolves.
	consoleRun(t, ctx, "failed task", chromedp.Navigate(base+"#/tasks/"+failed), chromedp.WaitVisible(chromedp.CSS(`#dag .node[data-step-name="merge"][data-state="error"]`)))
	resolve := `#step-table tr[data-step-name="merge"] button[data-action="resolve_manually"]`
	consoleRun(t, ctx, "resolve", chromedp.Click(chromedp.CSS(resolve)), chromedp.WaitVisible(chromedp.CSS("#confirm[open] #confirm-reason")),
		chromedp.SetValue(chromedp.CSS("#confirm-reason"), "checked by hand"), chromedp.Click(chromedp.CSS("#confirm-ok")))
	consoleWait(t, ctx, "merge shown resolved", `document.querySelector('#dag .node[data-step-name="merge"]').dataset.state === 'resolved_manually' &&
		document.querySelector('#task-status .badge').dataset.state === 'resolved_manually'`, 10*time.Second)
	if st, err := state.CurrentTaskState(t.Context(), pool, uuid.MustParse(failed)); err != nil || st != state.TaskResolvedManually {
		t.Errorf("failed task in the database: %s %v", st, err)
	}
	if trail := orchTaskTrail(t, pool, uuid.MustParse(failed)); !strings.Contains(fmt.Sprint(trail), "ManualResolution") {
		t.Errorf("task trail %v", trail)
	}

	// The layout on its own: longest-path layers, and an order within layers that uncrosses edges.
	var layers [][]string
	consoleEval(t, ctx, `layoutDAG(['r', 'x', 'y', 'z', 'a1', 'a2', 'c1', 'c2'],
		[['r', 'x'], ['x', 'y'], ['y', 'z'], ['r', 'z'], ['a1', 'c2'], ['a2', 'c1']]).layers`, &layers)
	if fmt.Sprint(layers) != "[[r a1 a2] [x c2 c1] [y] [z]]" {
		t.Errorf("layoutDAG layers %v, want [[r a1 a2] [x c2 c1] [y] [z]]", layers)
	}

	// Edges of batch workers (<worker template>_<batch id>) come from their worker template.
	var edges [][]string
	consoleEval(t, ctx, `dagEdges(['split', 'work_001', 'work_002', 'join'].map(n => ({name: n, workflow_step_uuid: n})),
		new Map([['split', []], ['work', ['split']], ['join', ['work']]]))`, &edges)
	if fmt.Sprint(edges) != "[[split work_001] [split work_002] [work_001 join] [work_002 join]]" {
		t.Errorf("batch edges %v", edges)
	}

	// Phone width: nothing scrolls the page sideways; the DAG scales to fit.
	// The same tab at phone width (a second browser process sometimes hung at its first
	// navigation); a page change within the console is a fragment change.
	phone := ctx
	consoleRun(t, phone, "phone viewport", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"", "#/tasks", "#/tasks/" + done, "#/tasks/" + done + "/steps/" + doneSteps["merge"].String()} {
		var ignored any
		// Empty the page first, so that the wait below sees the new page, not the last one, and
		// pass through another hash, so that a hashchange fires even when page is the current one.
		consoleEval(t, phone, fmt.Sprintf("document.getElementById('main').replaceChildren(), location.hash = '#/phone-check', location.hash = %q, null", page), &ignored)
		consoleWait(t, phone, "phone page "+page+" loaded", `document.querySelector('#main h1')`, 15*time.Second)
		if strings.HasPrefix(page, "#/tasks/") && !strings.Contains(page, "steps") {
			consoleRun(t, phone, "phone DAG", chromedp.WaitVisible(chromedp.CSS("#dag .node")))
			if n := consoleNodes(t, phone); len(n) != 4 {
				t.Errorf("phone DAG nodes %v", n)
			}
			consoleScreenshot(t, phone, "task-dag-phone.png")
		}
		consoleNoHorizontalScroll(t, phone, "phone "+page)
	}
}

// TestConsoleInBrowserWithAPIKey: with auth on, the console asks for a credential once, sends
// it as X-API-Key and keeps it for the tab's session.
func TestConsoleInBrowserWithAPIKey(t *testing.T) {
	exe := consoleChromium(t)
	_, pool := testdb.New(t)
	orchRegister(t, pool, consoleYAML)
	o := orchNew(t, pool, nil)
	ct := orchCreate(t, o, orchRequest("console", "console_flow", `{"mode":"ok"}`))
	const key = "console-test-key"
	a, err := api.New(o, pool, api.Options{Logger: orchLogger(), Auth: api.AuthConfig{Enabled: true, APIKeysEnabled: true,
		StrictValidation: true, APIKeys: []api.APIKey{{Key: key, Permissions: []string{"tasks:read", "tasks:list", "steps:read"}, Description: "console test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.New(web.Config{Routes: console.Routes(a.Mount), Templates: web.DBTemplates{DB: pool},
		TemplateAccess: a, Logger: orchLogger()}).Handler())
	t.Cleanup(srv.Close)
	page := srv.URL + console.Path + "#/tasks/" + ct.TaskUUID.String()

	ctx := consoleBrowser(t, exe, 1280, 800)
	consoleRun(t, ctx, "open without a key", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#auth-input")))
	consoleWait(t, ctx, "asks for credentials", `document.getElementById('banner').textContent.startsWith('Authentication required') &&
		!document.querySelector('#dag')`, 5*time.Second)
	consoleRun(t, ctx, "enter the key", chromedp.SendKeys(chromedp.CSS("#auth-input"), key),
		chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#dag .node")))
	if n := consoleNodes(t, ctx); len(n) != 4 || n["fetch"] == "" {
		t.Errorf("DAG after signing in: %v", n)
	}
	var stored string
	consoleEval(t, ctx, `sessionStorage.getItem('tasker.console.credential') || ''`, &stored)
	if stored != key {
		t.Errorf("session storage holds %q", stored)
	}
	// A reload keeps the key: no second prompt.
	consoleRun(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#dag .node")))
	var bannerShown bool
	consoleEval(t, ctx, `!document.getElementById('banner').hidden`, &bannerShown)
	if bannerShown {
		t.Error("banner shown after reload with a stored key")
	}
}
