package datapath

// Discard undoes a start that failed: when this Guard created the pins under
// its pin root, it detaches what it attached and removes them, so that a
// failed `run` does not leave the maps (tens of MiB for the default ban
// table) pinned with nothing using them. Pins that were adopted from an
// earlier run hold that run's bans and stay; so does everything when
// nothing is pinned. The Guard is closed either way.
func (g *Guard) Discard() error {
	var err error
	if g.created && g.pinRoot != "" {
		err = g.DetachAll()
	}
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	return err
}
