package loader

import (
	"fmt"
	"slices"
	"strings"
)

// ReasonFromName maps a reason name to its code. Unlike ParseReason it
// refuses a name that is not in the table, so that an operator's typo is an
// error instead of a ban recorded as one reason in the kernel and another
// in the state file.
func ReasonFromName(s string) (Reason, error) {
	for k, v := range reasonNames {
		if v == s && k != 0 {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown ban reason %q (valid: %s)", s, strings.Join(ReasonNames(), ", "))
}

// ReasonNames lists the names ReasonFromName accepts, sorted.
func ReasonNames() []string {
	var names []string
	for k, v := range reasonNames {
		if k != 0 {
			names = append(names, v)
		}
	}
	slices.Sort(names)
	return names
}
