/* Per-mailbox queue settings: the STORE_SETTING_* metadata entries, validated when set and
 * cached as numbers in the mailbox so the claim path reads the lease without parsing. The cache
 * is re-derived whenever an annotation changes, live or replayed, so checkpoints and replay
 * restore it with the annotation itself. */
#include <string.h>
#include <strings.h>

#include "imap/base/limits.h"
#include "imap/store/store-private.h"

/* Key, default and largest value of each setting, indexed by enum store_setting_index. The
 * message limit has no fixed default: unset, the store's own applies (store_mailbox_limit). */
static const struct {
	const char *key;
	uint32_t fallback;
	uint32_t max;
} settings[STORE_NSETTINGS] = {
    [STORE_SET_LEASE] = {STORE_SETTING_LEASE, STORE_DEFAULT_LEASE, IMAPQ_MAX_QUEUE_SETTING},
    [STORE_SET_MAX_ATTEMPTS] = {STORE_SETTING_MAX_ATTEMPTS, STORE_DEFAULT_MAX_ATTEMPTS,
				IMAPQ_MAX_QUEUE_SETTING},
    [STORE_SET_RETENTION] = {STORE_SETTING_RETENTION, STORE_DEFAULT_RETENTION,
			     IMAPQ_MAX_QUEUE_SETTING},
    [STORE_SET_MAX_MESSAGES] = {STORE_SETTING_MAX_MESSAGES, 0, IMAPQ_MAX_MESSAGES_SETTING},
};

int store_setting_of_key(const char *key, size_t klen)
{
	for (int k = 0; k < STORE_NSETTINGS; k++)
		if (strlen(settings[k].key) == klen && strncasecmp(settings[k].key, key, klen) == 0)
			return k;
	return -1;
}

bool store_setting_parse(int k, const char *value, size_t vlen, uint32_t *v_r)
{
	if (k < 0 || k >= STORE_NSETTINGS || !value || vlen == 0 || vlen > 10 || value[0] == '0')
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < vlen; i++) {
		if (value[i] < '0' || value[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(value[i] - '0');
	}
	if (v > settings[k].max)
		return false;
	*v_r = (uint32_t)v;
	return true;
}

void store_setting_note(struct mailbox *mb, const char *key, size_t klen, const char *value,
			size_t vlen)
{
	int k = store_setting_of_key(key, klen);
	if (k < 0)
		return;
	uint32_t v = 0;
	if (value && !store_setting_parse(k, value, vlen, &v))
		v = 0;
	mb->settings[k] = v;
}

uint32_t store_setting_get(const struct mailbox *mb, enum store_setting_index k)
{
	return mb->settings[k] ? mb->settings[k] : settings[k].fallback;
}

uint32_t store_mailbox_limit(const struct store *s, const struct mailbox *mb)
{
	uint32_t v = mb->settings[STORE_SET_MAX_MESSAGES];
	return v ? v : s->max_mailbox_messages;
}

imapq_err store_quota_check(const struct store *s, const struct mailbox *mb, uint64_t add,
			    uint64_t grow)
{
	uint64_t count = msgtable_count(mb->msgs);
	if (add > 0 && count + add > store_mailbox_limit(s, mb))
		return IMAPQ_E_OVERQUOTA;
	if (grow > 0 && s->messages + grow > s->max_messages)
		return IMAPQ_E_OVERQUOTA;
	return IMAPQ_OK;
}
