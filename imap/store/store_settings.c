/* Per-mailbox queue settings: the STORE_SETTING_* metadata entries, validated when set and
 * cached as numbers in the mailbox so the claim path reads the lease without parsing. The cache
 * is re-derived whenever an annotation changes, live or replayed, so checkpoints and replay
 * restore it with the annotation itself. */
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/store/store-private.h"

/* Key and default of each setting, indexed by enum store_setting_index. */
static const struct {
	const char *key;
	uint32_t fallback;
} settings[STORE_NSETTINGS] = {
    [STORE_SET_LEASE] = {STORE_SETTING_LEASE, STORE_DEFAULT_LEASE},
    [STORE_SET_MAX_ATTEMPTS] = {STORE_SETTING_MAX_ATTEMPTS, STORE_DEFAULT_MAX_ATTEMPTS},
    [STORE_SET_RETENTION] = {STORE_SETTING_RETENTION, STORE_DEFAULT_RETENTION},
};

int store_setting_of_key(const char *key, size_t klen)
{
	for (int k = 0; k < STORE_NSETTINGS; k++)
		if (strlen(settings[k].key) == klen && strncasecmp(settings[k].key, key, klen) == 0)
			return k;
	return -1;
}

bool store_setting_parse(const char *value, size_t vlen, uint32_t *v_r)
{
	if (!value || vlen == 0 || vlen > 8 || value[0] == '0')
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] < '0' || value[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(value[i] - '0');
	}
	if (v > IMAPQ_MAX_QUEUE_SETTING)
		return false;
	*v_r = v;
	return true;
}

void store_setting_note(struct mailbox *mb, const char *key, size_t klen, const char *value,
			size_t vlen)
{
	int k = store_setting_of_key(key, klen);
	if (k < 0)
		return;
	uint32_t v = 0;
	if (value && !store_setting_parse(value, vlen, &v))
		v = 0;
	mb->settings[k] = v;
}

uint32_t store_setting_get(const struct mailbox *mb, enum store_setting_index k)
{
	return mb->settings[k] ? mb->settings[k] : settings[k].fallback;
}
