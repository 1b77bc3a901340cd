package api

import (
	"fmt"
	"slices"
	"strings"
)

// publicResources need no credentials (tasker-core's Resource::is_public).
var publicResources = []string{"health", "metrics", "docs"}

// permissionResources are the resources a "<resource>:*" wildcard may name.
var permissionResources = []string{"tasks", "steps", "dlq", "templates", "system", "worker"}

// routePermissions maps "<resource>:<action>" of a guarded route to the permission it requires,
// as tasker-core's ResourceAction::to_permission does: reads and lists of steps, DLQ entries
// and templates share one permission, and the worker's template routes need
// worker:templates_read.
var routePermissions = map[string]string{
	"tasks:create":          "tasks:create",
	"tasks:read":            "tasks:read",
	"tasks:list":            "tasks:list",
	"tasks:cancel":          "tasks:cancel",
	"tasks:context_read":    "tasks:context_read",
	"steps:read":            "steps:read",
	"steps:list":            "steps:read",
	"steps:resolve":         "steps:resolve",
	"dlq:read":              "dlq:read",
	"dlq:list":              "dlq:read",
	"dlq:update":            "dlq:update",
	"dlq:stats":             "dlq:stats",
	"templates:read":        "templates:read",
	"templates:list":        "templates:read",
	"templates:validate":    "templates:validate",
	"system:config_read":    "system:config_read",
	"system:handlers_read":  "system:handlers_read",
	"system:analytics_read": "system:analytics_read",
	"worker:config_read":    "worker:config_read",
	"worker:read":           "worker:templates_read",
	"worker:list":           "worker:templates_read",
	"worker:validate":       "templates:validate",
}

// Permissions lists every permission a token or API key may grant, besides the
// "<resource>:*" wildcards (tasker-core's Permission vocabulary).
func Permissions() []string {
	var out []string
	for _, p := range routePermissions {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// requiredPermission returns the permission a route guarded with resource and action requires;
// public is true for health, metrics and docs. An unknown pair is a programming error.
func requiredPermission(resource, action string) (perm string, public bool, err error) {
	if slices.Contains(publicResources, resource) {
		return "", true, nil
	}
	p, ok := routePermissions[resource+":"+action]
	if !ok {
		return "", false, fmt.Errorf("api: no permission for resource %q action %q", resource, action)
	}
	return p, false, nil
}

// permissionMatches reports whether a granted permission covers required: the same string, or
// "<resource>:*" of the same resource. A bare "*" matches nothing, as in tasker-core.
func permissionMatches(granted, required string) bool {
	if granted == required {
		return true
	}
	prefix, ok := strings.CutSuffix(granted, ":*")
	if !ok {
		return false
	}
	res, _, _ := strings.Cut(required, ":")
	return prefix == res
}

// hasPermission reports whether any of granted covers required.
func hasPermission(granted []string, required string) bool {
	return slices.ContainsFunc(granted, func(g string) bool { return permissionMatches(g, required) })
}

// unknownPermissions returns the entries of granted outside the vocabulary (a known
// "<resource>:*" is known; "*" is not).
func unknownPermissions(granted []string) []string {
	var out []string
	for _, g := range granted {
		if prefix, ok := strings.CutSuffix(g, ":*"); ok {
			if !slices.Contains(permissionResources, prefix) {
				out = append(out, g)
			}
			continue
		}
		if !slices.Contains(Permissions(), g) {
			out = append(out, g)
		}
	}
	return out
}
