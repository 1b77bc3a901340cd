package api

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtLeeway is the clock skew allowed on exp and nbf (jsonwebtoken's default, which tasker-core
// uses).
const jwtLeeway = 60 * time.Second

// tokenClaims are tasker-core's TokenClaims: sub, iss, aud (a string), exp and iat are required;
// permissions and worker_namespaces default to empty.
type tokenClaims struct {
	Subject          *string          `json:"sub"`
	Issuer           string           `json:"iss"`
	Audience         string           `json:"aud"`
	ExpiresAt        *jwt.NumericDate `json:"exp"`
	IssuedAt         *jwt.NumericDate `json:"iat"`
	NotBefore        *jwt.NumericDate `json:"nbf,omitempty"`
	Permissions      []string         `json:"permissions"`
	WorkerNamespaces []string         `json:"worker_namespaces"`
}

func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *tokenClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}
func (c *tokenClaims) GetSubject() (string, error) {
	if c.Subject == nil {
		return "", nil
	}
	return *c.Subject, nil
}

// errMissingClaim is returned for a token without sub or iat.
var errMissingClaim = errors.New("token is missing a required claim")

// jwtVerifier checks RS256 tokens signed by the holder of one RSA key pair.
type jwtVerifier struct {
	key    *rsa.PublicKey
	parser *jwt.Parser
}

// newJWTVerifier parses pemKey (PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY" or a certificate) and
// expects tokens with issuer iss and audience aud. now is the clock (nil: time.Now).
func newJWTVerifier(pemKey []byte, iss, aud string, now func() time.Time) (*jwtVerifier, error) {
	key, err := jwt.ParseRSAPublicKeyFromPEM(pemKey)
	if err != nil {
		return nil, fmt.Errorf("api: parse JWT public key: %w", err)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(iss),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(jwtLeeway),
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &jwtVerifier{key: key, parser: jwt.NewParser(opts...)}, nil
}

// verify checks token's signature, algorithm, issuer, audience, expiry and not-before, and
// returns its claims. Errors wrap golang-jwt's (jwt.ErrTokenExpired, ...) or errMissingClaim.
func (v *jwtVerifier) verify(token string) (*tokenClaims, error) {
	var c tokenClaims
	if _, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.key, nil }); err != nil {
		return nil, fmt.Errorf("api: verify token: %w", err)
	}
	if c.Subject == nil || c.IssuedAt == nil {
		return nil, fmt.Errorf("api: verify token: %w (sub and iat are required)", errMissingClaim)
	}
	return &c, nil
}
