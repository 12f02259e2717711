package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"

	"github.com/droverhq/drover/internal/core"
	"github.com/google/uuid"
)

// role is what a bearer token may do.
type role int

const (
	// roleNone: the token matched neither the operator token nor an owner
	// token; it may still be a worker token (checked against the worker
	// addressed by the request).
	roleNone role = iota
	roleOperator
	roleOwner
)

// principal is the authenticated caller of one request. Tokens themselves
// are never stored here, only their SHA-256.
type principal struct {
	role  role
	owner string // roleOwner
	// hash is the hex SHA-256 of the bearer token.
	hash string
}

// HashToken returns the hex SHA-256 of a bearer token, the form stored in
// workers.token_hash.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func errUnauthorized() error {
	return core.Errorf(core.EUNAUTHORIZED, "missing or invalid bearer token")
}

func errForbidden(what string) error {
	return core.Errorf(core.EFORBIDDEN, "this token may not %s", what)
}

// authenticate reads the bearer token. It fails with EUNAUTHORIZED only when
// the header is missing; whether a worker token is valid is decided by
// authWorker, which knows the worker addressed.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(h, "bearer ")
	}
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return principal{}, errUnauthorized()
	}
	sum := sha256.Sum256([]byte(tok))
	p := principal{hash: hex.EncodeToString(sum[:])}
	// Compare digests in constant time so that the comparison leaks nothing
	// about the operator token.
	if s.operatorHash != nil && subtle.ConstantTimeCompare(sum[:], s.operatorHash) == 1 {
		p.role = roleOperator
		return p, nil
	}
	if owner, ok := s.ownerTokens[p.hash]; ok {
		p.role = roleOwner
		p.owner = owner
	}
	return p, nil
}

// requireOperator allows only the operator token.
func (s *Server) requireOperator(p principal, what string) error {
	switch {
	case p.role == roleOperator:
		return nil
	case p.role == roleOwner || s.workers.knownHash(p.hash):
		return errForbidden(what)
	}
	return errUnauthorized()
}

// authWorker allows the operator token or the token of worker id. A valid
// token of another worker, or an owner token, gets EFORBIDDEN; anything
// else EUNAUTHORIZED. It returns the worker's cached facts.
func (s *Server) authWorker(ctx context.Context, p principal, id uuid.UUID) (workerInfo, error) {
	if p.role == roleOwner {
		return workerInfo{}, errForbidden("act as a worker")
	}
	wi, err := s.workers.get(ctx, s, id)
	if err != nil {
		if core.ErrorCode(err) == core.ENOTFOUND {
			if p.role == roleOperator {
				return workerInfo{}, core.Errorf(core.ENOTFOUND, "worker %s not found", id)
			}
			// Do not reveal which worker ids exist to unauthenticated callers.
			if s.workers.knownHash(p.hash) {
				return workerInfo{}, errForbidden("act for another worker")
			}
			return workerInfo{}, errUnauthorized()
		}
		return workerInfo{}, err
	}
	if p.role == roleOperator {
		return wi, nil
	}
	if wi.tokenHash != "" && subtle.ConstantTimeCompare([]byte(p.hash), []byte(wi.tokenHash)) == 1 {
		s.workers.rememberHash(p.hash, id)
		return wi, nil
	}
	if s.workers.knownHash(p.hash) {
		return workerInfo{}, errForbidden("act for another worker")
	}
	return workerInfo{}, errUnauthorized()
}

// workerInfo is what the server caches about a worker: facts that never
// change after the row is inserted.
type workerInfo struct {
	tokenHash string
	pool      string
}

// workerCache caches immutable worker facts so that authenticating a
// heartbeat or a claim costs no database round trip after the first.
type workerCache struct {
	mu     sync.RWMutex
	byID   map[uuid.UUID]workerInfo
	hashes map[string]uuid.UUID // verified token hash → worker
}

// maxCachedWorkers bounds the cache; it is simply reset when full.
const maxCachedWorkers = 100_000

func newWorkerCache() *workerCache {
	return &workerCache{byID: map[uuid.UUID]workerInfo{}, hashes: map[string]uuid.UUID{}}
}

func (c *workerCache) get(ctx context.Context, s *Server, id uuid.UUID) (workerInfo, error) {
	c.mu.RLock()
	wi, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return wi, nil
	}
	w, err := s.store.WorkerGet(ctx, id)
	if err != nil {
		return workerInfo{}, err
	}
	wi = workerInfo{tokenHash: w.TokenHash, pool: w.Pool}
	c.mu.Lock()
	if len(c.byID) >= maxCachedWorkers {
		c.byID = map[uuid.UUID]workerInfo{}
	}
	c.byID[id] = wi
	c.mu.Unlock()
	return wi, nil
}

func (c *workerCache) rememberHash(hash string, id uuid.UUID) {
	c.mu.RLock()
	_, ok := c.hashes[hash]
	c.mu.RUnlock()
	if ok {
		return
	}
	c.mu.Lock()
	if len(c.hashes) >= maxCachedWorkers {
		c.hashes = map[string]uuid.UUID{}
	}
	c.hashes[hash] = id
	c.mu.Unlock()
}

// workerOf returns the worker a token hash was verified for, if any.
func (c *workerCache) workerOf(hash string) (uuid.UUID, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.hashes[hash]
	return id, ok
}

func (c *workerCache) knownHash(hash string) bool {
	_, ok := c.workerOf(hash)
	return ok
}
