package config

import (
	"fmt"
	"strings"
)

// checkJournal checks logs.journal. The names end up as journalctl match
// arguments (FIELD=value, "+" between groups), so a name must not be able
// to read as one of those.
func checkJournal(ps *problems, j Journal) {
	if j.Enabled && len(j.Units) == 0 && len(j.Identifiers) == 0 {
		ps.add("logs.journal", "enabled with no units and no identifiers: nothing would be read")
	}
	for key, names := range map[string][]string{"logs.journal.units": j.Units, "logs.journal.identifiers": j.Identifiers} {
		seen := map[string]bool{}
		for i, n := range names {
			k := fmt.Sprintf("%s[%d]", key, i)
			switch {
			case n == "":
				ps.add(k, "empty name")
			case n == "+" || strings.ContainsAny(n, "= \t\n") || strings.ContainsRune(n, 0):
				ps.add(k, "%q: a name has no '=', blanks or NUL and is not '+'", n)
			case seen[n]:
				ps.add(k, "%q: listed twice", n)
			}
			seen[n] = true
		}
	}
	if j.Directory != "" {
		if msg := checkAbs(j.Directory); msg != "" {
			ps.add("logs.journal.directory", "%q: %s", j.Directory, msg)
		}
	}
}
