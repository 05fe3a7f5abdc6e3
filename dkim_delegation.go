package penguinmails

import "fmt"

// Delegated selectors. A platform cannot ask every customer to edit DNS at
// every rotation. With config dkim_delegation_zone set, a domain created
// afterwards gets two fixed selectors, and the customer publishes, once, a
// CNAME for each into the platform's zone:
//
//	{s}._domainkey.{domain}  CNAME  {s}.{domain}.{zone}
//
// The platform publishes the TXT records at the targets, and rotation
// alternates between the two selectors, so the customer never touches DNS
// again. The target keeps the whole domain as labels below the zone: a
// single label made by replacing dots (example.com -> example-com) would
// make a-b.com and a.b-com collide.

// delegatedSelectors are the two fixed selectors of a delegated domain.
func delegatedSelectors(s dkimSettings) []string {
	return []string{s.SelectorPrefix + "1", s.SelectorPrefix + "2"}
}

// nextDelegatedSelector is the selector the active key does not use. A
// version still holding it (its overlap not yet ended, or still pending)
// would have its record replaced under it: the rotation waits.
func nextDelegatedSelector(e *secretEntry, s dkimSettings) (string, error) {
	sels := delegatedSelectors(s)
	next := sels[0]
	if cur := e.current(); cur != nil {
		var m dkimMaterial
		if err := decodeMaterial(cur, &m); err != nil {
			return "", err
		}
		if m.Selector == sels[0] {
			next = sels[1]
		}
	}
	for i := range e.Versions {
		v := &e.Versions[i]
		var m dkimMaterial
		if decodeMaterial(v, &m) != nil || m.Selector != next {
			continue
		}
		if v.Status == dkimStatusRetiring || v.Status == statusPending || (v.Status == statusActive && v.Version != e.CurrentVersion) {
			return "", &inProgress{fmt.Sprintf("%s/%s/%s: selector %s is still in use by version %d (%s until %s); "+
				"a delegated domain rotates once its other selector is free", e.Kind, e.Tenant, e.Name, next, v.Version, v.Status,
				formatTime(v.GraceUntil))}
		}
	}
	return next, nil
}

// delegationRecords are the CNAMEs the customer publishes once.
func delegationRecords(e *secretEntry, s dkimSettings) []interface{} {
	var out []interface{}
	for _, sel := range delegatedSelectors(s) {
		names := []string{sel}
		if s.DualAlgorithm {
			names = append(names, sel+companionSuffix)
		}
		for _, n := range names {
			out = append(out, map[string]interface{}{
				"name": n + "._domainkey." + e.Name, "type": "CNAME", "value": delegatedTarget(n, e.Name, s.DelegationZone),
			})
		}
	}
	return out
}
