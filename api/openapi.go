package api

import (
	"encoding/json"
	"net/http"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasker-go/tasker/protocol"
)

// OpenAPIPath is where the API serves its OpenAPI 3 document (tasker-core's path).
const OpenAPIPath = "/api-docs/openapi.json"

// Route is one API route: Mount registers it through handle, and the OpenAPI document lists
// exactly the routes registered this way (plus Options.ExtraRoutes), so the document cannot
// name a route that does not exist.
type Route struct {
	// Method and Path in http.ServeMux form: "GET", "/v1/tasks/{uuid}". Path parameters are
	// documented from the {names} in Path.
	Method, Path string
	// Resource and Action are tasker-core's permission (resources.rs), checked by guard; both
	// empty means a public route.
	Resource, Action string
	// Tag groups the operation ("tasks", "workflow_steps", "dlq", "analytics", "config", ...).
	Tag     string
	Summary string
	// Query lists the query parameters.
	Query []Param
	// Body is a value of the request body type (nil: no body).
	Body any
	// Responses lists every status the route answers with. Body is a value of the response
	// type (nil: tasker-core's error body for status >= 400, no content otherwise).
	Responses []Response
}

// Param is a query parameter.
type Param struct {
	Name, Description string
	// Type is the JSON Schema type: "string", "integer", "boolean".
	Type     string
	Required bool
}

// Response is one documented answer of a route.
type Response struct {
	Status      int
	Description string
	Body        any
}

// handle registers h for rt on mux, behind guard when rt names a permission, and records rt for
// the OpenAPI document. Every /v1 route is registered this way.
func (a *API) handle(mux *http.ServeMux, rt Route, h http.HandlerFunc) {
	pattern := rt.Method + " " + rt.Path
	if rt.Resource != "" {
		mux.Handle(pattern, a.guard(rt.Resource, rt.Action, h))
	} else {
		mux.Handle(pattern, h)
	}
	a.routes = append(a.routes, rt)
}

// serveOpenAPI answers the OpenAPI document of the routes registered so far.
func (a *API) serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, openAPIDocument(append(append([]Route(nil), a.routes...), a.extra...)))
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// openAPIDocument builds an OpenAPI 3.0.3 document for routes, with a schema per Go body type.
func openAPIDocument(routes []Route) map[string]any {
	g := &schemaGen{types: map[string]reflect.Type{}, schemas: map[string]any{
		"ApiError": map[string]any{
			"type":     "object",
			"required": []string{"error"},
			"properties": map[string]any{"error": map[string]any{
				"type":     "object",
				"required": []string{"code", "message"},
				"properties": map[string]any{
					"code":    map[string]any{"type": "string"},
					"message": map[string]any{"type": "string"},
				},
			}},
		},
	}}
	paths := map[string]map[string]any{}
	tags := map[string]bool{}
	for _, rt := range routes {
		path := strings.TrimSuffix(strings.ReplaceAll(rt.Path, "...}", "}"), "{$}")
		op := map[string]any{
			"operationId": operationID(rt),
			"summary":     rt.Summary,
		}
		if rt.Tag != "" {
			op["tags"] = []string{rt.Tag}
			tags[rt.Tag] = true
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true,
				"schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.Query {
			p := map[string]any{"name": q.Name, "in": "query", "required": q.Required,
				"schema": map[string]any{"type": q.Type}}
			if q.Description != "" {
				p["description"] = q.Description
			}
			params = append(params, p)
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.Body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.schemaOf(reflect.TypeOf(rt.Body))}}}
		}
		resps := map[string]any{}
		for _, r := range rt.Responses {
			resp := map[string]any{"description": r.Description}
			switch {
			case r.Body != nil:
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": g.schemaOf(reflect.TypeOf(r.Body))}}
			case r.Status >= 400:
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ApiError"}}}
			}
			resps[strconv.Itoa(r.Status)] = resp
		}
		if rt.Resource != "" { // guard's answers when auth is enabled
			for status, desc := range map[int]string{401: "Authentication required", 403: "Insufficient permissions"} {
				if _, ok := resps[strconv.Itoa(status)]; !ok {
					resps[strconv.Itoa(status)] = map[string]any{"description": desc, "content": map[string]any{
						"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ApiError"}}}}
				}
			}
		}
		op["responses"] = resps
		if rt.Resource != "" {
			op["security"] = []any{map[string]any{"bearer_auth": []string{}}, map[string]any{"api_key_auth": []string{}}}
			op["x-required-permission"] = rt.Resource + ":" + rt.Action
		}
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(rt.Method)] = op
	}
	tagList := make([]string, 0, len(tags))
	for t := range tags {
		tagList = append(tagList, t)
	}
	sort.Strings(tagList)
	tagObjs := make([]any, len(tagList))
	for i, t := range tagList {
		tagObjs[i] = map[string]any{"name": t}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Tasker Web API",
			"version":     "1.0.0",
			"description": "REST API for the Tasker workflow orchestration system (tasker-go orchestrator)",
			"license":     map[string]any{"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
		},
		"servers": []any{map[string]any{"url": "/", "description": "API version 1"}},
		"tags":    tagObjs,
		"paths":   paths,
		"components": map[string]any{
			"schemas": g.schemas,
			"securitySchemes": map[string]any{
				"bearer_auth":  map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
				"api_key_auth": map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
			},
		},
	}
}

// operationID is method_path in snake case, e.g. get_v1_tasks_uuid_workflow_steps.
func operationID(rt Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.FieldsFunc(rt.Path, func(r rune) bool { return r == '/' || r == '{' || r == '}' || r == '-' || r == '.' }) {
		if part == "$" {
			continue
		}
		b.WriteString("_" + strings.TrimSuffix(part, "..."))
	}
	return b.String()
}

// schemaGen derives JSON schemas from Go types by their json tags; named structs become
// components, named by the Go type name (qualified by its package when two types share it).
type schemaGen struct {
	schemas map[string]any
	types   map[string]reflect.Type
}

var (
	rawMessageType = reflect.TypeOf(json.RawMessage(nil))
	timeType       = reflect.TypeOf(time.Time{})
	utcTimeType    = reflect.TypeOf(utcTime{})
	naiveTimeType  = reflect.TypeOf(protocol.NaiveTime{})
	uuidType       = reflect.TypeOf(uuid.UUID{})
)

func (g *schemaGen) schemaOf(t reflect.Type) map[string]any {
	switch t {
	case rawMessageType:
		return map[string]any{"description": "any JSON value"}
	case timeType, utcTimeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case naiveTimeType:
		return map[string]any{"type": "string", "description": "UTC timestamp without offset"}
	case uuidType:
		return map[string]any{"type": "string", "format": "uuid"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.schemaOf(t.Elem())
		if _, ref := s["$ref"]; ref {
			return map[string]any{"allOf": []any{s}, "nullable": true}
		}
		s["nullable"] = true
		return s
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schemaOf(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int32, reflect.Int16, reflect.Int8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": "integer", "format": "int32", "minimum": 0}
	case reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return g.structSchema(t)
		}
		if seen, ok := g.types[name]; ok && seen != t {
			name = path.Base(t.PkgPath()) + "." + name
		}
		if _, ok := g.schemas[name]; !ok {
			g.types[name] = t
			g.schemas[name] = map[string]any{} // placeholder against recursion
			g.schemas[name] = g.structSchema(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schemaOf(f.Type)
		if !strings.Contains(opts, "omitempty") {
			required = append(required, name)
		}
	}
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}
