// Package auth says who is calling fleet's API and what they may do.
//
// It provides:
//   - Role (read, peer, admin) and Role.Allows, the order between them;
//   - Identity, the caller a request was authenticated as, carried in a
//     request's context (NewContext, FromContext);
//   - Tokens, the bearer tokens of api_tokens_file (LoadTokens,
//     ParseTokens), compared by SHA-256 digest in constant time;
//   - Authenticator, which turns a request's bearer token or verified
//     client certificate into an Identity.
//
// It leaves TLS (certificates, client verification) to the listener that
// fleetd builds with internal/pki, and which role a route needs to package
// api (RequiredRole, Authorize).
package auth
