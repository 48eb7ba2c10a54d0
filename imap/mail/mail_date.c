/* RFC 5322 date-time parsing (section 3.3 and the obsolete forms of section 4.3), and the sent
 * date of a parsed message. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "imap/mail/mail-private.h"

/* Lexing state: the rest of the value. */
struct date_lex {
	const char *p;
	const char *end;
};

/* Skips blanks, folds and comments. */
static void skip(struct date_lex *d)
{
	struct mail_lex lx = {d->p, d->end};

	mail_lex_skip_cfws(&lx);
	d->p = lx.p;
}

/* Reads up to max_digits digits; returns how many were read (0 when none). */
static int read_num(struct date_lex *d, int max_digits, int *v)
{
	int n = 0;

	*v = 0;
	while (d->p < d->end && n < max_digits && isdigit((unsigned char)*d->p)) {
		*v = *v * 10 + (*d->p - '0');
		d->p++;
		n++;
	}
	return n;
}

/* Reads a run of letters into word (NUL-terminated, cut to cap - 1); returns its length. */
static size_t read_word(struct date_lex *d, char *word, size_t cap)
{
	size_t n = 0;

	while (d->p < d->end && isalpha((unsigned char)*d->p)) {
		if (n + 1 < cap)
			word[n] = *d->p;
		n++;
		d->p++;
	}
	word[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* Month 1..12 from its English name or abbreviation, 0 when unknown. */
static int month_number(const char *w, size_t len)
{
	static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
					     "jul", "aug", "sep", "oct", "nov", "dec"};

	if (len < 3)
		return 0;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(w, months[i], 3) == 0)
			return i + 1;
	return 0;
}

/* Offset in minutes of a named zone (RFC 5322 section 4.3); military letters count as
 * unknown and give 0, as that section asks. Returns false for an unknown name. */
static bool zone_name(const char *w, size_t len, int *tz)
{
	static const struct {
		const char *name;
		int minutes;
	} zones[] = {
	    {"UT", 0},	      {"UTC", 0},	{"GMT", 0},	  {"Z", 0},
	    {"EST", -5 * 60}, {"EDT", -4 * 60}, {"CST", -6 * 60}, {"CDT", -5 * 60},
	    {"MST", -7 * 60}, {"MDT", -6 * 60}, {"PST", -8 * 60}, {"PDT", -7 * 60},
	};

	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
		if (strcasecmp(w, zones[i].name) == 0) {
			*tz = zones[i].minutes;
			return true;
		}
	}
	if (len == 1 && isalpha((unsigned char)w[0]) && w[0] != 'j' && w[0] != 'J') {
		*tz = 0;
		return true;
	}
	return false;
}

/* Days from 1970-01-01 to the given proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return days[m - 1];
}

imapq_err mail_date_parse(const char *s, size_t len, int64_t *epoch_r, int *tz_minutes_r)
{
	struct date_lex d = {s, s + len};
	char word[16];
	int day, year, hour, min, sec = 0, tz = 0;

	skip(&d);
	if (d.p < d.end && isalpha((unsigned char)*d.p)) {
		read_word(&d, word, sizeof(word)); /* the day of week, not checked */
		skip(&d);
		if (d.p < d.end && *d.p == ',')
			d.p++;
		skip(&d);
	}
	if (read_num(&d, 2, &day) == 0)
		return IMAPQ_E_INVALID;
	skip(&d);
	if (d.p < d.end && (*d.p == '-' || *d.p == '/'))
		d.p++;
	size_t wlen = read_word(&d, word, sizeof(word));
	int month = month_number(word, wlen);

	if (month == 0)
		return IMAPQ_E_INVALID;
	skip(&d);
	if (d.p < d.end && (*d.p == '-' || *d.p == '/'))
		d.p++;
	int ydigits = read_num(&d, 4, &year);

	if (ydigits < 2)
		return IMAPQ_E_INVALID;
	if (ydigits == 2)
		year += year < 50 ? 2000 : 1900; /* RFC 5322 section 4.3 */
	else if (ydigits == 3)
		year += 1900;
	skip(&d);
	if (read_num(&d, 2, &hour) == 0)
		return IMAPQ_E_INVALID;
	skip(&d);
	if (d.p >= d.end || *d.p != ':')
		return IMAPQ_E_INVALID;
	d.p++;
	skip(&d);
	if (read_num(&d, 2, &min) != 2)
		return IMAPQ_E_INVALID;
	skip(&d);
	if (d.p < d.end && *d.p == ':') {
		d.p++;
		skip(&d);
		if (read_num(&d, 2, &sec) != 2)
			return IMAPQ_E_INVALID;
		skip(&d);
	}
	if (d.p < d.end && (*d.p == '+' || *d.p == '-')) {
		int sign = *d.p == '-' ? -1 : 1;
		int hhmm;

		d.p++;
		if (read_num(&d, 4, &hhmm) != 4 || hhmm % 100 >= 60)
			return IMAPQ_E_INVALID;
		tz = sign * (hhmm / 100 * 60 + hhmm % 100);
	} else if (d.p < d.end && isalpha((unsigned char)*d.p)) {
		wlen = read_word(&d, word, sizeof(word));
		if (!zone_name(word, wlen, &tz))
			return IMAPQ_E_INVALID;
	}
	skip(&d);
	if (d.p != d.end)
		return IMAPQ_E_INVALID;
	if (day < 1 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 60)
		return IMAPQ_E_INVALID;
	int64_t t = days_from_civil(year, month, day) * 86400 + hour * 3600 + min * 60 + sec;

	if (epoch_r != NULL)
		*epoch_r = t - (int64_t)tz * 60;
	if (tz_minutes_r != NULL)
		*tz_minutes_r = tz;
	return IMAPQ_OK;
}

imapq_err mail_sent_date(const struct mail *mail, int64_t *epoch_r, int *tz_minutes_r)
{
	const char *date = mail->root->env != NULL ? mail->root->env[MAIL_ENV_DATE] : NULL;

	if (date == NULL)
		return IMAPQ_E_NOTFOUND;
	return mail_date_parse(date, strlen(date), epoch_r, tz_minutes_r);
}

imapq_err mail_sent_day(const struct mail *mail, int64_t *day_r)
{
	int64_t epoch;
	int tz;
	imapq_err err = mail_sent_date(mail, &epoch, &tz);

	if (err != IMAPQ_OK)
		return err;
	int64_t local = epoch + (int64_t)tz * 60;

	*day_r = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
	return IMAPQ_OK;
}
