// Package httpfast is the HTTP face of the appliance on fasthttp: routing,
// middleware (request ids, authentication, rate limits, compression, body
// limits), the handlers of the public /v1 API and of the /admin/v1 plane, and
// the one table that maps domain error codes to HTTP statuses.
//
// It translates; it does not decide. Every rule lives in package appliance,
// and handlers never open Pebble or talk to WhatsApp.
package httpfast
