package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Setting is one key of the effective configuration, as `tasker config validate` prints it.
type Setting struct {
	Key string
	// Value is written as in the file; secrets are redacted.
	Value string
	// Source is "default", "file", "flag" or an environment variable, followed by
	// " via <key>" when the value came from another key of the file.
	Source string
}

// Redacted replaces a secret value.
const Redacted = "[redacted]"

// secretKeys are the keys whose values are never printed (only whether they are set).
var secretKeys = map[string]bool{
	"worker.web.auth.api_key":               true,
	"worker.web.auth.jwt_public_key":        true,
	"orchestration.web.auth.api_key":        true,
	"orchestration.web.auth.jwt_public_key": true,
}

// Effective lists the value of every setting, in table order: one key per setting (keys that
// only feed another key's setting are left out), plus the keys whose value is fixed. Database
// passwords, API keys and JWT keys are redacted; api_keys shows how many keys there are.
func (c Config) Effective() []Setting {
	seen := map[string]bool{}
	var out []Setting
	for i := range table {
		e := &table[i]
		var v string
		switch {
		case e.fixed != nil:
			v = fmt.Sprintf("%q", fmt.Sprint(e.fixed))
			if b, ok := e.fixed.(bool); ok {
				v = fmt.Sprint(b)
			}
		case e.field == "" || e.fallbackOf != "" || seen[e.field]:
			continue
		default:
			seen[e.field] = true
			v = formatValue(e.kind, fieldOf(&c, e.field))
		}
		switch {
		case e.Key == keyDatabaseURL:
			v = fmt.Sprintf("%q", RedactURL(c.Database.URL))
		case secretKeys[e.Key] && v != `""`:
			v = Redacted
		}
		src := c.Source(e.Key)
		if via, ok := c.via[e.Key]; ok && src == "default" {
			src = c.Source(via) + " via " + via
		}
		out = append(out, Setting{Key: e.Key, Value: v, Source: src})
	}
	return out
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL hides the password of a PostgreSQL URL or keyword/value connection string.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(strings.ToLower(s), "password") {
		return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
	}
	return s
}
