// Package dist holds what the package ships besides the binary. The Dovecot
// snippet is embedded here so that the end-to-end tests configure Dovecot
// with the very file operators install, not a copy of it.
package dist

import _ "embed"

// DovecotPriority is dovecot-priority.conf: the priority listeners
// (README, "Users first: priority listeners").
//
//go:embed dovecot-priority.conf
var DovecotPriority string
