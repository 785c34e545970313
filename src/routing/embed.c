/* embed.c — the builtin embedder (see embed.h, docs/embedder.md).
 *
 * Pipeline, one left-to-right pass over the bytes:
 *   1. tokenise: ASCII letters are lower-cased; a word is a run of ASCII
 *      letters/digits and non-ASCII letters (UTF-8 decoded only to tell
 *      letters from punctuation such as NBSP or curly quotes); an
 *      apostrophe inside a word is dropped ("don't" -> "dont"); `c++`,
 *      `c#`, `f#` and `.net` stay whole.
 *   2. normalise: stop words are dropped; pure ASCII words are stemmed
 *      (Porter 1980); words holding digits become a shape ("cet1" stays,
 *      "7781203" -> "0000000").
 *   3. features: the word, the bigram with the previous kept word,
 *      character 3-5-grams of the word with boundary marks, and the
 *      concepts of the built-in lexicon that the word or bigram names;
 *      plus shapes read from the bytes (code punctuation, snake_case,
 *      camelCase, e-mail addresses, long numbers, capitalised name pairs,
 *      acronyms) and the text's length class.
 *   4. hashing: word features go through a 64-bit hash into buckets
 *      [EMBED_SLOTS, dim) with a hash-chosen sign; concepts and shapes have
 *      their own slots [0, EMBED_SLOTS) so they never collide.
 *   5. weighting: each bucket becomes sign * sqrt(|sum|) * idf, the
 *      concept slots sqrt(count) * weight * idf; then L2 normalisation.
 *
 * The model (stop-word set, lexicon table, IDF) is built once and only
 * read afterwards. A call keeps its state on the stack (under 200 bytes of
 * token buffers) and writes into the caller's output array. */
#include "routing/embed.h"
#include "routing/text.h"

#include <math.h>
#include <stdlib.h>

/* ---- parameters (measured with tests/eval/semantic_eval.sh) ---- */

#define DIM EMBED_BUILTIN_DIM
#define EMBED_SLOTS 64          /* reserved concept/shape/length slots */
#define TOK_MAX 48              /* bytes of a word kept for features */
#define NGRAM_MAX_WORD 24       /* n-grams come from the first 24 bytes */

struct embed_params {
	float w_uni, w_bi, w_ngram, w_shape, w_concept, w_len, idf_pow;
};

static const struct embed_params embed_params = {
	.w_uni = 1.0f,
	.w_bi = 0.6f,
	.w_ngram = 0.05f,
	.w_shape = 0.5f,
	.w_concept = 1.5f,
	.w_len = 1.5f,
	.idf_pow = 1.0f,
};

/* ---- concepts ---- */

enum concept {
	C_SOFTWARE, C_DEVOPS, C_DATA, C_ERROR, C_CODESHAPE,
	C_REGULATION, C_REGIME, C_RISK,
	C_PERSONAL, C_PARTY, C_IDSHAPE, C_NAME, C_PRONOUN,
	C_QUICK, C_UNITS, C_LANGUAGE, C_ACRONYM,
	C_WRITING, C_PLANNING, C_EXPLAIN, C_FINANCE, C_PEOPLE,
	C_LEN0, /* C_LEN0 + k: length class k */
	C_COUNT = C_LEN0 + 7
};

/* The lexicon: general domain vocabulary, one concept per line of
 * phrases separated by '|'. A phrase is one or two content words after
 * the same tokenising, stop-word removal and stemming as the input
 * ("date of birth" -> date+birth, a bigram). Written from domain
 * knowledge, not from any labelled data. */
static const struct {
	enum concept c;
	const char *phrases;
} lexicon[] = {
	{ C_SOFTWARE,
	  "code|coding|program|programming|function|method|class|variable|"
	  "compile|compiler|syntax|refactor|debug|debugger|bug|unit test|"
	  "test case|pytest|junit|unittest|mock|fixture|python|java|javascript|"
	  "typescript|golang|go function|rust|ruby|php|perl|scala|kotlin|swift|"
	  "c++|c#|.net|dotnet|node|nodejs|react|angular|django|flask|spring|"
	  "library|package|module|dependency|import|api|endpoint|rest|json|"
	  "yaml|xml|regex|regular expression|script|bash|shell|powershell|"
	  "loop|array|list comprehension|dictionary|string|integer|float|"
	  "boolean|null|pointer|recursion|async|await|thread|concurrency|"
	  "lambda|closure|object|interface|inheritance|generic|type hint|"
	  "parse|parser|serialize|decorator|iterator|callback|runtime|"
	  "implement|implementation|algorithm|snippet|repository|repo|"
	  "pull request|code review|lint|linter|formatter|ide|vscode|"
	  "stack overflow|sdk|cli|command line|argument|parameter|return value|"
	  "unit|integration test|coverage|performance|optimise|optimize|"
	  "memory leak|cache|hash|vba|macro|rounding|half even|decimal type" },
	{ C_DEVOPS,
	  "git|github|gitlab|bitbucket|commit|rebase|merge conflict|branch|"
	  "pipeline|ci|cd|ci cd|jenkins|github actions|workflow|build|deploy|"
	  "deployment|release|docker|dockerfile|container|kubernetes|k8s|helm|"
	  "pod|terraform|ansible|cloudformation|infrastructure code|aws|azure|"
	  "gcp|s3|lambda function|ec2|server|nginx|apache|linux|unix|cron|"
	  "crontab|systemd|log|logs|logging|log rotation|monitoring|alert|"
	  "prometheus|grafana|ssl|tls|certificate|ssh|port|firewall|dns|proxy|"
	  "load balancer|latency|timeout|config|configuration|environment|"
	  "env var|secret|token|sonarqube|maven|gradle|npm|pip|virtualenv|"
	  "makefile|artifact|staging|production|rollback|kafka|queue|"
	  "microservice|batch job|scheduler|airflow|jira" },
	{ C_DATA,
	  "sql|query|select|join|left join|inner join|group by|where clause|"
	  "index|table|column|row|schema|database|postgres|postgresql|mysql|"
	  "oracle|sql server|sqlite|mongodb|redis|snowflake|bigquery|"
	  "stored procedure|view|trigger|primary key|foreign key|migration|"
	  "orm|transaction isolation|deadlock|dataframe|pandas|numpy|spark|"
	  "etl|data pipeline|csv|parquet|excel formula|spreadsheet|vlookup|"
	  "xlookup|pivot table|cell|formula|power bi|tableau|dax" },
	{ C_ERROR,
	  "error|exception|stack trace|traceback|crash|crashes|segfault|"
	  "fails|failing|failed build|broken|throws|raise|raises|warning|"
	  "undefined|permission denied|hang|hangs|"
	  "slow query|deadlocks|null pointer|fix bug|oom|unexpected|"
	  "snapshot too old|ora|exit code|stacktrace" },
	{ C_REGULATION,
	  "regulation|regulations|regulatory|regulator|rule|rules|directive|"
	  "requirement|requirements|require|comply|compliance|compliant|"
	  "non compliance|obligation|obligations|law|legal|legislation|"
	  "statute|statutory|provision|article|recital|guidance|guideline|"
	  "guidelines|supervisory|supervisor|supervision|exemption|exempt|"
	  "in scope|apply|applies|applicable|jurisdiction|enforcement|penalty|"
	  "breach|sanction|sanctions|licence|license|authorisation|"
	  "authorization|permission|framework|standard|technical standard|"
	  "disclosure|disclose|filing|reporting requirement|"
	  "attestation|internal control|controls|audit|auditor|governance|"
	  "policy requirement|consultation paper|final rule|proposed rule|"
	  "threshold|transitional|grandfathering|equivalence|passporting|"
	  "substituted compliance|safe harbour|safe harbor|due diligence|"
	  "risk based approach|record keeping|retention period|"
	  "right erasure|lawful basis|legitimate interest|data protection|"
	  "privacy notice|consent|whistleblowing|conduct|best execution|"
	  "suitability|appropriateness|fair value|accounting standard" },
	{ C_REGIME,
	  "basel|basel iii|basel iv|crr|crr2|crr3|crd|crd iv|crd vi|mifid|"
	  "mifid ii|mifir|emir|sftr|gdpr|uk gdpr|ccpa|cpra|glba|hipaa|"
	  "dodd frank|volcker|title vii|sec|finra|fca|pra|eba|esma|eiopa|ecb|"
	  "ssm|srb|fed|federal reserve|occ|fdic|cftc|cfpb|fincen|ofac|fatf|"
	  "aml|amld|6amld|cft|ctf|kyc|cdd|edd|bsa|patriot act|sox|"
	  "sarbanes oxley|dora|nis2|psd2|psd3|solvency|ifrs|cecl|gaap|"
	  "frtb|irb|sa ccr|cva|lcr|nsfr|cet1|tier|at1|tlac|mrel|pillar|"
	  "icaap|ilaap|srep|bcbs|iosco|fsb|ucits|aifmd|"
	  "priips|kid|sfdr|csrd|eu taxonomy|mar|market abuse|consumer duty|"
	  "smcr|senior managers|reg bi|regulation best interest|sr|"
	  "ss1|travel rule|ecoa|fcra|tila|respa|udaap|cra|ffiec|eu ai act|"
	  "ai act|mica|bank secrecy|cfr|usc|ecj|eu|member state|union law" },
	{ C_RISK,
	  "capital|capital requirement|own funds|liquidity|exposure|"
	  "risk weight|risk weighted|rwa|leverage|leverage ratio|counterparty|"
	  "derivative|derivatives|swap|swaps|collateral|margin|initial margin|"
	  "stress test|stress testing|model risk|operational risk|market risk|"
	  "credit risk|provisioning|impairment|expected loss|ecl|buffer|"
	  "capital buffer|large exposures|concentration risk|risk appetite|"
	  "recovery plan|resolution|outsourcing|third party risk|ict risk|"
	  "operational resilience|incident reporting|money laundering|"
	  "terrorist financing|suspicious activity|sar|str|transaction monitoring|"
	  "sanctions screening|pep|beneficial owner|beneficial ownership" },
	{ C_PERSONAL,
	  "name|full name|surname|first name|address|home address|postcode|"
	  "zip code|passport|passport number|driving licence|driver license|"
	  "driver licence|id card|national id|date birth|dob|birth|born|age|"
	  "ssn|social security|national insurance|ni number|tax id|tin|"
	  "account number|sort code|iban|card number|card ending|phone number|"
	  "mobile number|email address|salary|salaries|payslip|pay slip|wage|"
	  "wages|net pay|bonus|medical|health|diagnosis|sick leave|sickness|"
	  "disability|pregnant|pregnancy|maternity|marital status|spouse|wife|"
	  "husband|partner|daughter|son|child|children|widow|deceased|"
	  "bereavement|divorce|nationality|ethnicity|religion|criminal record|"
	  "conviction|background check|credit score|credit report|credit file|"
	  "garnishment|arrears|debt collection|bankruptcy|insolvency|"
	  "disciplinary|grievance|dismissal|misconduct|performance improvement|"
	  "mr|mrs|ms|miss|dr|dear|signature|personal data|personal details|"
	  "customer file|client file|kyc file|loan file|hr file|employee record|"
	  "customer record|pasted|statement|bank statement|"
	  "transaction history|home|lives|moved|care home|retired|married" },
	{ C_PARTY,
	  "customer|customers|client|clients|borrower|borrowers|applicant|"
	  "cardholder|account holder|beneficiary|guarantor|tenant|employee|"
	  "candidate|patient|member|policyholder|claimant|complainant|"
	  "debtor|payee|payer|sender|recipient|counterparty name|contact" },
	{ C_PRONOUN,
	  "he|she|him|his|her|hers|himself|herself" },
	{ C_QUICK,
	  "define|definition|meaning|mean|means|stand|stands|stand for|acronym|"
	  "abbreviation|abbreviate|expand|convert|conversion|translate|"
	  "translation|spell|spelling|spelt|typo|grammar|grammatical|synonym|"
	  "antonym|opposite|plural|singular|pronounce|pronunciation|round|"
	  "decimal places|percent|percentage|calculate|one word|one sentence|"
	  "one line|briefly|brief|short answer|yes|no|true false|classify|"
	  "category|sentiment|capital city|how many|quick|quickly|"
	  "fix typo|correct|correct spelling|which one|difference" },
	{ C_UNITS,
	  "celsius|fahrenheit|degree|degrees|kelvin|kilometre|kilometer|km|"
	  "mile|miles|metre|meter|feet|foot|inch|inches|yard|kg|kilogram|gram|"
	  "pound|pounds|lb|ounce|litre|liter|gallon|dollar|dollars|euro|"
	  "euros|usd|eur|gbp|jpy|chf|cad|aud|yen|sterling|currency|"
	  "exchange rate|basis point|basis points|bps|million|billion|thousand" },
	{ C_LANGUAGE,
	  "spanish|french|german|italian|portuguese|dutch|polish|chinese|"
	  "mandarin|japanese|korean|arabic|hindi|russian|english|word|words|"
	  "phrase|sentence|language|term|idiom|proverb|letter word" },
	{ C_WRITING,
	  "draft|write|rewrite|email|e mail|letter|memo|message|note|"
	  "announcement|announce|newsletter|post|blog|blog post|press release|"
	  "speech|talking points|faq|invitation|invite|thank|thanks|thank you|"
	  "congratulate|congratulations|apology|apologise|tone|polite|warm|"
	  "friendly|professional|formal|informal|proofread|headline|slogan|"
	  "tagline|linkedin|social media|intranet|caption|bio|story|poem|"
	  "welcome|farewell|reminder|update|copy|wording|outline|essay" },
	{ C_PLANNING,
	  "plan|planning|brainstorm|ideas|idea|agenda|meeting|meetings|"
	  "workshop|offsite|off site|event|team|teams|volunteer|volunteering|"
	  "celebration|party|lunch|dinner|breakfast|schedule|timeline|roadmap|"
	  "project|kickoff|kick off|checklist|tips|advice|improve|productivity|"
	  "motivation|morale|wellbeing|well being|training|onboarding|"
	  "engagement|culture|strategy|goals|okr|okrs|retrospective|town hall|"
	  "hybrid working|office|conference|hackathon|quiz|game|name ideas|"
	  "suggest|suggestions|options|prioritise|prioritize|decide|decision" },
	{ C_EXPLAIN,
	  "explain|explanation|overview|introduction|beginner|simple terms|"
	  "plain english|how does|why does|history|pros cons|compare|"
	  "comparison|summarise|summarize|summary|describe|difference between|"
	  "example|examples|analogy|understand|learn|teach|concept|theory" },
	{ C_FINANCE,
	  "loan|mortgage|credit|debit|account|accounts|balance|interest|"
	  "interest rate|payment|payments|transaction|transactions|deposit|"
	  "withdrawal|transfer|wire|fee|fees|charge|charges|invoice|amount|"
	  "limit|overdraft|card|credit card|debit card|bank|banking|branch|"
	  "fund|funds|investment|portfolio|equity|bond|bonds|share|shares|"
	  "stock|dividend|revenue|profit|budget|forecast|cost|price|pricing|"
	  "savings|pension|isa|insurance|premium|claim|refund|direct debit|"
	  "standing order|mandate|sepa|swift|ach|wire transfer|payroll" },
	{ C_PEOPLE,
	  "staff|employees|colleague|colleagues|manager|managers|leadership|"
	  "hr|human resources|hire|hiring|recruit|recruitment|interview|"
	  "promotion|appraisal|performance review|feedback|mentor|coaching|"
	  "new joiner|joiners|leaver|leavers|headcount|diversity|inclusion" },
};

/* Stop words: function words and prompt filler that say nothing about
 * the route. Third-person pronouns are NOT here: they hint at a named
 * individual (C_PRONOUN). Matched on the lower-cased word, before
 * stemming; apostrophes are already gone ("don't" -> "dont"). */
static const char stop_words[] =
	"a an the and or but if then else so of to in on at by for with from "
	"into onto over under about above below between through during before "
	"after up down out off again further once here there when where why how "
	"all any both each few more most other some such only own same than too "
	"very just also as is are was were be been being am do does did doing "
	"done have has had having can could would should shall will may might "
	"must ought i me my mine myself we us our ours ourselves you your yours "
	"yourself yourselves it its itself they them their theirs themselves "
	"what which who whom whose this that these those not nor no s t d ll m "
	"re ve y dont doesnt didnt isnt arent wasnt werent cant couldnt wouldnt "
	"shouldnt wont hasnt havent hadnt im ive id youre youve youd weve were "
	"theyre theyve thats whats wheres whos hows lets heres theres please "
	"thank thanks hi hello hey ok okay get got give gives make makes let "
	"go goes going want wants need needs like would e g eg ie etc via per "
	"within without across along among around upon whether while because "
	"until although though since unless yet still ever even much many "
	"something anything everything someone anyone one two three";

/* ---- hashing ---- */

#define SEED_UNI 0x9e3779b97f4a7c15ull
#define SEED_BI 0xc2b2ae3d27d4eb4full
#define SEED_NG 0x165667b19e3779f9ull
#define SEED_SHAPE 0x27d4eb2f165667c5ull

static inline uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* splitmix64 finaliser: spreads a hash and a seed over all 64 bits. */
static inline uint64_t mix(uint64_t h, uint64_t seed)
{
	h += seed;
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

/* Bigram key from two word hashes (order matters). */
static inline uint64_t pair(uint64_t a, uint64_t b)
{
	return mix(a * 0x9e3779b97f4a7c15ull ^ b, SEED_BI);
}

/* ---- the model ---- */

#define LEX_CAP 4096   /* open addressing, power of two, load < 0.5 */
#define STOP_CAP 1024

struct lex_ent {
	uint64_t key;      /* 0 = empty */
	uint32_t concepts; /* bit per enum concept */
};

struct embed_builtin {
	float idf[DIM];
	struct lex_ent lex[LEX_CAP];
	uint64_t stop[STOP_CAP];
};

static void lex_put(struct lex_ent *t, uint64_t key, uint32_t bits)
{
	size_t i;

	key |= 1; /* never 0 */
	for (i = key & (LEX_CAP - 1); t[i].key && t[i].key != key; i = (i + 1) & (LEX_CAP - 1))
		;
	t[i].key = key;
	t[i].concepts |= bits;
}

static uint32_t lex_get(const struct lex_ent *t, uint64_t key)
{
	key |= 1;
	for (size_t i = key & (LEX_CAP - 1); t[i].key; i = (i + 1) & (LEX_CAP - 1))
		if (t[i].key == key)
			return t[i].concepts;
	return 0;
}

static void stop_put(uint64_t *t, uint64_t key)
{
	size_t i;

	key |= 1;
	for (i = key & (STOP_CAP - 1); t[i] && t[i] != key; i = (i + 1) & (STOP_CAP - 1))
		;
	t[i] = key;
}

static bool stop_has(const uint64_t *t, uint64_t key)
{
	key |= 1;
	for (size_t i = key & (STOP_CAP - 1); t[i]; i = (i + 1) & (STOP_CAP - 1))
		if (t[i] == key)
			return true;
	return false;
}

/* ---- Porter stemmer (M. F. Porter, 1980), on a bounded buffer ---- */

struct stem {
	char *b;
	int k, j; /* b[0..k] is the word; j marks a suffix's start - 1 */
};

static inline bool st_vowel(int c)
{
	return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/* Is b[i] a consonant? 'y' is one at the start or after a vowel, a vowel
 * after a consonant: along a run of y's the answer alternates, so it is
 * computed from the run's start instead of by recursion. */
static bool st_cons(const struct stem *s, int i)
{
	int k = i;
	bool c;

	if (s->b[i] != 'y')
		return !st_vowel(s->b[i]);
	while (k > 0 && s->b[k - 1] == 'y')
		k--;
	c = k == 0 ? true : st_vowel(s->b[k - 1]);
	return ((i - k) & 1) ? !c : c;
}

/* The number of consonant-vowel sequences in b[0..j]. */
static int st_m(const struct stem *s)
{
	int n = 0, i = 0;

	for (;;) {
		if (i > s->j)
			return n;
		if (!st_cons(s, i))
			break;
		i++;
	}
	i++;
	for (;;) {
		for (;;) {
			if (i > s->j)
				return n;
			if (st_cons(s, i))
				break;
			i++;
		}
		i++;
		n++;
		for (;;) {
			if (i > s->j)
				return n;
			if (!st_cons(s, i))
				break;
			i++;
		}
		i++;
	}
}

static bool st_vowel_in_stem(const struct stem *s)
{
	for (int i = 0; i <= s->j; i++)
		if (!st_cons(s, i))
			return true;
	return false;
}

static bool st_doublec(const struct stem *s, int j)
{
	return j >= 1 && s->b[j] == s->b[j - 1] && st_cons(s, j);
}

static bool st_cvc(const struct stem *s, int i)
{
	int ch;

	if (i < 2 || !st_cons(s, i) || st_cons(s, i - 1) || !st_cons(s, i - 2))
		return false;
	ch = s->b[i];
	return ch != 'w' && ch != 'x' && ch != 'y';
}

static bool st_ends(struct stem *s, const char *suf)
{
	int len = (int)strlen(suf);

	if (len > s->k + 1 || memcmp(s->b + s->k - len + 1, suf, (size_t)len) != 0)
		return false;
	s->j = s->k - len;
	return true;
}

static void st_setto(struct stem *s, const char *rep)
{
	int len = (int)strlen(rep);

	memcpy(s->b + s->j + 1, rep, (size_t)len);
	s->k = s->j + len;
}

static void st_r(struct stem *s, const char *rep)
{
	if (st_m(s) > 0)
		st_setto(s, rep);
}

static void st_step1ab(struct stem *s)
{
	if (s->b[s->k] == 's') {
		if (st_ends(s, "sses"))
			s->k -= 2;
		else if (st_ends(s, "ies"))
			st_setto(s, "i");
		else if (s->k >= 1 && s->b[s->k - 1] != 's')
			s->k--;
	}
	if (st_ends(s, "eed")) {
		if (st_m(s) > 0)
			s->k--;
	} else if ((st_ends(s, "ed") || st_ends(s, "ing")) && st_vowel_in_stem(s)) {
		s->k = s->j;
		if (st_ends(s, "at"))
			st_setto(s, "ate");
		else if (st_ends(s, "bl"))
			st_setto(s, "ble");
		else if (st_ends(s, "iz"))
			st_setto(s, "ize");
		else if (st_doublec(s, s->k)) {
			int ch = s->b[s->k - 1];

			if (ch != 'l' && ch != 's' && ch != 'z')
				s->k--;
		} else {
			s->j = s->k;
			if (st_m(s) == 1 && st_cvc(s, s->k))
				st_setto(s, "e");
		}
	}
}

static void st_step1c(struct stem *s)
{
	if (st_ends(s, "y") && st_vowel_in_stem(s))
		s->b[s->k] = 'i';
}

/* Suffix pairs for steps 2 and 3, tried in order. */
static const char *const step2[][2] = {
	{ "ational", "ate" }, { "tional", "tion" }, { "enci", "ence" },
	{ "anci", "ance" }, { "izer", "ize" }, { "bli", "ble" },
	{ "alli", "al" }, { "entli", "ent" }, { "eli", "e" }, { "ousli", "ous" },
	{ "ization", "ize" }, { "ation", "ate" }, { "ator", "ate" },
	{ "alism", "al" }, { "iveness", "ive" }, { "fulness", "ful" },
	{ "ousness", "ous" }, { "aliti", "al" }, { "iviti", "ive" },
	{ "biliti", "ble" }, { "logi", "log" },
};
static const char *const step3[][2] = {
	{ "icate", "ic" }, { "ative", "" }, { "alize", "al" }, { "iciti", "ic" },
	{ "ical", "ic" }, { "ful", "" }, { "ness", "" },
};
static const char *const step4[] = {
	"al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement",
	"ment", "ent", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
};

static void st_pairs(struct stem *s, const char *const (*tab)[2], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (st_ends(s, tab[i][0])) {
			st_r(s, tab[i][1]);
			return;
		}
}

static void st_step4(struct stem *s)
{
	for (size_t i = 0; i < UMB_ARRAY_LEN(step4); i++) {
		if (!st_ends(s, step4[i]))
			continue;
		/* "ion" only after s or t */
		if (strcmp(step4[i], "ion") == 0 &&
		    (s->j < 0 || (s->b[s->j] != 's' && s->b[s->j] != 't')))
			continue;
		if (st_m(s) > 1)
			s->k = s->j;
		return;
	}
}

static void st_step5(struct stem *s)
{
	s->j = s->k;
	if (s->b[s->k] == 'e') {
		int a = st_m(s);

		if (a > 1 || (a == 1 && !st_cvc(s, s->k - 1)))
			s->k--;
	}
	if (s->b[s->k] == 'l' && st_doublec(s, s->k)) {
		s->j = s->k;
		if (st_m(s) > 1)
			s->k--;
	}
}

/* Stem b[0..n) (lower-case ASCII letters) in place; returns the new
 * length. The suffix rewrites never lengthen a word by more than one
 * byte ("at" -> "ate"), and the caller leaves room for it. */
static size_t porter_stem(char *b, size_t n)
{
	struct stem s = { b, (int)n - 1, 0 };

	if (n <= 2)
		return n;
	st_step1ab(&s);
	if (s.k > 0) {
		st_step1c(&s);
		st_pairs(&s, step2, UMB_ARRAY_LEN(step2));
		st_pairs(&s, step3, UMB_ARRAY_LEN(step3));
		st_step4(&s);
		st_step5(&s);
	}
	return (size_t)s.k + 1;
}

/* ---- tokeniser ---- */

static inline bool is_digit(int c) { return c >= '0' && c <= '9'; }
static inline bool is_alpha(int c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline bool is_alnum(int c) { return is_digit(c) || is_alpha(c); }
static inline bool is_upper(int c) { return c >= 'A' && c <= 'Z'; }

/* Length of a word character at p[i] (0 if it is not one). */
static size_t word_char(const unsigned char *p, size_t n, size_t i)
{
	uint32_t cp;
	size_t len;

	if (p[i] < 0x80)
		return is_alnum(p[i]) ? 1 : 0;
	len = text_utf8_decode(p + i, n - i, &cp);
	return len && !text_uni_is_sep(cp) ? len : 0;
}

struct tok {
	char s[TOK_MAX + 4]; /* lower-cased bytes (+ room for the stemmer) */
	size_t len;          /* bytes in s */
	size_t full;         /* bytes of the whole word (may exceed TOK_MAX) */
	unsigned digits, alphas, uppers, high;
	bool title;          /* Capitalised: upper first, rest lower */
	bool sent_start;     /* first word of a sentence or line */
	bool special;        /* c++, c#, .net */
};

struct tok_it {
	const unsigned char *p;
	size_t n, i;
	bool sent;         /* next word starts a sentence */
	/* shapes seen between words */
	unsigned code, email, ident;
};

static void tok_push(struct tok *t, int c)
{
	if (t->len < TOK_MAX)
		t->s[t->len++] = (char)c;
	t->full++;
}

/* ".net" at p[i]: after a non-word byte, not followed by a letter. */
static bool is_dotnet(const unsigned char *p, size_t n, size_t i)
{
	if (i + 3 >= n || (i > 0 && (is_alnum(p[i - 1]) || p[i - 1] >= 0x80)))
		return false;
	if ((p[i + 1] | 0x20) != 'n' || (p[i + 2] | 0x20) != 'e' || (p[i + 3] | 0x20) != 't')
		return false;
	return i + 4 >= n || !is_alnum(p[i + 4]);
}

/* Shapes in the punctuation between words: code operators and brackets,
 * e-mail addresses. Reads p[i] and a few bytes either side. */
static void tok_sep_shape(struct tok_it *it)
{
	const unsigned char *p = it->p;
	size_t i = it->i, n = it->n;
	int c = p[i], d = i + 1 < n ? p[i + 1] : 0;

	switch (c) {
	case '{': case '}': case '`': case '[':
		it->code++;
		break;
	case '=': case '!':
		if (d == '=' || (c == '=' && d == '>'))
			it->code++;
		break;
	case '-':
		if (d == '>')
			it->code++;
		break;
	case ':':
		if (d == ':')
			it->code++;
		break;
	case '(':
		if (d == ')' || (i > 0 && is_alnum(p[i - 1])))
			it->code++;
		break;
	case ';':
		if (d == '\n' || d == 0)
			it->code++;
		break;
	case '_':
		if (i > 0 && is_alnum(p[i - 1]) && is_alnum(d))
			it->ident++;
		break;
	case '.':
		/* obj.method / file.ext: letters on both sides, no space */
		if (i >= 2 && is_alpha(p[i - 1]) && is_alpha(p[i - 2]) &&
		    is_alpha(d) && i + 2 < n && is_alnum(p[i + 2]))
			it->ident++;
		break;
	case '@':
		if (i > 0 && is_alnum(p[i - 1]) && is_alnum(d)) {
			for (size_t k = i + 1; k < n && k < i + 64; k++) {
				if (p[k] == '.' && k + 1 < n && is_alpha(p[k + 1])) {
					it->email++;
					break;
				}
				if (!is_alnum(p[k]) && p[k] != '-' && p[k] != '.')
					break;
			}
		}
		break;
	}
}

/* The next word, or false at the end. Linear: each byte is looked at a
 * bounded number of times. */
static bool tok_next(struct tok_it *it, struct tok *t)
{
	const unsigned char *p = it->p;
	size_t n = it->n, len = 0;
	bool lower_seen = false;

	bool first_upper = false;

	t->len = t->full = 0;
	t->digits = t->alphas = t->uppers = t->high = 0;
	t->title = t->special = false;
	/* skip separators */
	while (it->i < n) {
		int c = p[it->i];

		if (c < 0x80) {
			if (is_alnum(c))
				break;
			if (c == '.' && is_dotnet(p, n, it->i)) {
				/* .net */
				tok_push(t, '.');
				it->i++;
				t->special = true;
				break;
			}
			if (c == '.' || c == '!' || c == '?' || c == '\n' || c == ':')
				it->sent = true;
			tok_sep_shape(it);
			it->i++;
			continue;
		}
		len = word_char(p, n, it->i);
		if (len)
			break;
		len = 1; /* malformed byte or punctuation: skip its sequence */
		{
			uint32_t cp;
			size_t l = text_utf8_decode(p + it->i, n - it->i, &cp);

			if (l)
				len = l;
		}
		it->i += len;
	}
	if (it->i >= n)
		return false;
	t->sent_start = it->sent;
	it->sent = false;
	/* read the word */
	while (it->i < n) {
		int c = p[it->i];

		if (c < 0x80 && is_alnum(c)) {
			if (is_digit(c))
				t->digits++;
			else {
				if (!t->alphas && !t->digits)
					first_upper = is_upper(c);
				t->alphas++;
				if (is_upper(c)) {
					t->uppers++;
					if (lower_seen)
						it->ident++; /* camelCase */
				} else {
					lower_seen = true;
				}
			}
			tok_push(t, is_upper(c) ? c + 32 : c);
			it->i++;
			continue;
		}
		if ((c == '\'' && t->alphas && it->i + 1 < n && is_alpha(p[it->i + 1]))) {
			it->i++; /* don't -> dont */
			continue;
		}
		if (c >= 0x80) {
			uint32_t cp;
			size_t l = text_utf8_decode(p + it->i, n - it->i, &cp);

			if (l && cp == 0x2019 && t->alphas && it->i + l < n &&
			    is_alpha(p[it->i + l])) {
				it->i += l; /* curly apostrophe */
				continue;
			}
			if (l && !text_uni_is_sep(cp)) {
				for (size_t k = 0; k < l; k++)
					tok_push(t, p[it->i + k]);
				t->high++;
				it->i += l;
				continue;
			}
		}
		break;
	}
	/* c++, c#, f#, g++ */
	if (t->full <= 2 && t->alphas == t->full && it->i < n) {
		if (p[it->i] == '+' && it->i + 1 < n && p[it->i + 1] == '+') {
			tok_push(t, '+');
			tok_push(t, '+');
			it->i += 2;
			t->special = true;
		} else if (p[it->i] == '#' && (it->i + 1 >= n || !is_alnum(p[it->i + 1]))) {
			tok_push(t, '#');
			it->i++;
			t->special = true;
		}
	}
	t->title = first_upper && t->uppers == 1 && t->alphas >= 2 && !t->digits && !t->high;
	return true;
}

/* ---- features ---- */

/* The per-call state: raw bucket sums live in the output array. */
struct feat {
	const struct embed_builtin *e;
	float *acc;
	float slot[C_COUNT];
	uint64_t prev;      /* last kept word's hash, 0 at a break */
	bool prev_title;    /* last kept word was Capitalised mid-sentence */
	size_t words;       /* kept words, for the length class */
};

static inline void add_hashed(struct feat *f, uint64_t h, float w)
{
	size_t b = EMBED_SLOTS + (size_t)(h % (DIM - EMBED_SLOTS));

	f->acc[b] += (h >> 63) ? -w : w;
}

static inline void add_concepts(struct feat *f, uint32_t bits)
{
	for (unsigned c = 0; bits; c++, bits >>= 1)
		if (bits & 1)
			f->slot[c] += 1.0f;
}

/* Character 3-5-grams of "<word>" (first NGRAM_MAX_WORD bytes). */
static void add_ngrams(struct feat *f, const struct tok *t)
{
	char w[NGRAM_MAX_WORD + 2];
	size_t n = UMB_MIN(t->len, (size_t)NGRAM_MAX_WORD);

	w[0] = '<';
	memcpy(w + 1, t->s, n);
	w[n + 1] = '>';
	n += 2;
	for (size_t i = 0; i + 3 <= n; i++) {
		uint64_t h = 0xcbf29ce484222325ull;

		for (size_t k = 0; k < 5 && i + k < n; k++) {
			h ^= (unsigned char)w[i + k];
			h *= 0x100000001b3ull;
			if (k >= 2)
				add_hashed(f, mix(h, SEED_NG), embed_params.w_ngram);
		}
	}
}

/* One word through stop words, stemming and the lexicon. */
static void feat_word(struct feat *f, struct tok *t)
{
	const struct embed_builtin *e = f->e;
	uint64_t h;
	uint32_t bits;
	bool lexical;

	if (t->full > TOK_MAX) {
		/* hex, base64, URLs glued together: only their shape counts */
		f->words++;
		add_hashed(f, mix(t->digits ? 2 : 1, SEED_SHAPE), embed_params.w_shape);
		f->prev = 0;
		return;
	}
	if (!t->digits && !t->special && t->len <= 12 &&
	    stop_has(e->stop, fnv1a(t->s, t->len))) {
		f->prev_title = false;
		return;
	}
	if (t->len == 1 && !t->digits) {
		f->prev_title = false;
		return;
	}
	f->words++;
	if (t->digits && t->alphas == 0) {
		/* a number: its length class, and long ones look like ids */
		size_t cls = t->len <= 2 ? 0 : t->len <= 4 ? 1 : t->len <= 6 ? 2 : 3;

		add_hashed(f, mix(10 + cls, SEED_SHAPE), embed_params.w_shape);
		if (t->len >= 5)
			f->slot[C_IDSHAPE] += 1.0f;
		f->prev = 0;
		f->prev_title = false;
		return;
	}
	if (t->digits && t->digits >= 4 && t->alphas <= 4) {
		/* ids, references, IBAN heads: shape only ("aa00..") */
		char sh[16];
		size_t n = UMB_MIN(t->len, sizeof(sh));

		for (size_t i = 0; i < n; i++)
			sh[i] = is_digit(t->s[i]) ? '0' : 'a';
		add_hashed(f, mix(fnv1a(sh, n), SEED_SHAPE), embed_params.w_shape);
		f->slot[C_IDSHAPE] += 1.0f;
		f->prev = 0;
		f->prev_title = false;
		return;
	}
	if (!t->digits && !t->high && !t->special)
		t->len = porter_stem(t->s, t->len);
	h = fnv1a(t->s, t->len);
	add_hashed(f, mix(h, SEED_UNI), embed_params.w_uni);
	bits = lex_get(e->lex, mix(h, SEED_UNI));
	if (f->prev) {
		uint64_t b = pair(f->prev, h);

		add_hashed(f, b, embed_params.w_bi);
		bits |= lex_get(e->lex, b);
	}
	lexical = bits != 0;
	add_concepts(f, bits);
	if (!t->special)
		add_ngrams(f, t);
	/* shapes of the original spelling */
	if (t->uppers == t->alphas && t->alphas >= 2 && t->alphas <= 6 && !t->high)
		f->slot[C_ACRONYM] += 1.0f;
	if (t->title && !t->sent_start && !lexical) {
		if (f->prev_title)
			f->slot[C_NAME] += 1.0f;
		f->prev_title = true;
	} else {
		f->prev_title = false;
	}
	f->prev = h;
}

/* Run the feature pass over text: raw signed sums into acc[EMBED_SLOTS..),
 * concept counts into f->slot. */
static void feat_run(struct feat *f, struct str text)
{
	struct tok_it it = { (const unsigned char *)text.p, text.p ? text.n : 0, 0, true, 0, 0, 0 };
	struct tok t;

	while (tok_next(&it, &t))
		feat_word(f, &t);
	if (f->words) {
		/* punctuation alone (no word) is not a feature */
		f->slot[C_CODESHAPE] += (float)(it.code + it.ident);
		f->slot[C_IDSHAPE] += (float)it.email;
		size_t w = f->words, cls = w <= 4 ? 0 : w <= 8 ? 1 : w <= 16 ? 2 :
			   w <= 32 ? 3 : w <= 64 ? 4 : w <= 128 ? 5 : 6;

		f->slot[C_LEN0 + cls] = 1.0f;
	}
}

/* Bucket sums -> weighted, sublinear values (before normalisation). */
static void feat_finish(const struct feat *f, const float *idf, float *out)
{
	for (size_t c = 0; c < EMBED_SLOTS; c++) {
		float w = c >= C_LEN0 ? embed_params.w_len : embed_params.w_concept;

		out[c] = c < C_COUNT && f->slot[c] > 0 ? w * sqrtf(f->slot[c]) * idf[c] : 0.0f;
	}
	for (size_t b = EMBED_SLOTS; b < DIM; b++) {
		float v = out[b];

		if (v != 0.0f)
			out[b] = (v < 0 ? -sqrtf(-v) : sqrtf(v)) * idf[b];
	}
}

/* ---- public ---- */

static void lexicon_load(struct embed_builtin *e)
{
	for (size_t l = 0; l < UMB_ARRAY_LEN(lexicon); l++) {
		const char *s = lexicon[l].phrases;

		while (*s) {
			const char *end = strchr(s, '|');
			size_t n = end ? (size_t)(end - s) : strlen(s);
			struct tok_it it = { (const unsigned char *)s, n, 0, true, 0, 0, 0 };
			struct tok t;
			uint64_t hs[2];
			size_t k = 0;

			while (tok_next(&it, &t)) {
				if (!t.digits && !t.special && t.len <= 12 &&
				    stop_has(e->stop, fnv1a(t.s, t.len)))
					continue;
				if (!t.digits && !t.high && !t.special)
					t.len = porter_stem(t.s, t.len);
				if (k < 2)
					hs[k] = fnv1a(t.s, t.len);
				k++;
			}
			if (k == 1)
				lex_put(e->lex, mix(hs[0], SEED_UNI), 1u << lexicon[l].c);
			else if (k == 2)
				lex_put(e->lex, pair(hs[0], hs[1]), 1u << lexicon[l].c);
			s += n + (end ? 1 : 0);
		}
	}
}

static void stop_load(struct embed_builtin *e)
{
	const char *s = stop_words;

	while (*s) {
		size_t n = strcspn(s, " ");

		if (n)
			stop_put(e->stop, fnv1a(s, n));
		s += n + (s[n] ? 1 : 0);
	}
}

struct embed_builtin *embed_builtin_new(const struct str *corpus, size_t n)
{
	struct embed_builtin *e = umb_calloc(1, sizeof(*e));

	stop_load(e);
	lexicon_load(e);
	for (size_t b = 0; b < DIM; b++)
		e->idf[b] = 1.0f;
	if (corpus && n) {
		/* document frequency per bucket and slot */
		float *acc = umb_calloc(DIM, sizeof(float));
		uint32_t *df = umb_calloc(DIM, sizeof(uint32_t));

		for (size_t d = 0; d < n; d++) {
			struct feat f = { .e = e, .acc = acc };

			memset(acc, 0, DIM * sizeof(float));
			feat_run(&f, corpus[d]);
			for (size_t c = 0; c < C_COUNT; c++)
				df[c] += f.slot[c] > 0;
			for (size_t b = EMBED_SLOTS; b < DIM; b++)
				df[b] += acc[b] != 0.0f;
		}
		for (size_t b = 0; b < DIM; b++) {
			double idf = 1.0 + log((double)(n + 1) / (double)(df[b] + 1));

			e->idf[b] = (float)pow(idf, embed_params.idf_pow);
		}
		free(acc);
		free(df);
	}
	return e;
}

void embed_builtin_free(struct embed_builtin *e)
{
	free(e);
}

size_t embed_builtin_dim(const struct embed_builtin *e)
{
	(void)e;
	return DIM;
}

void embed_builtin_vec(const struct embed_builtin *e, struct str text, float *out)
{
	struct feat f = { .e = e, .acc = out };
	double norm = 0;

	memset(out, 0, DIM * sizeof(float));
	feat_run(&f, text);
	feat_finish(&f, e->idf, out);
	for (size_t b = 0; b < DIM; b++)
		norm += (double)out[b] * out[b];
	if (norm > 0) {
		float inv = (float)(1.0 / sqrt(norm));

		for (size_t b = 0; b < DIM; b++)
			out[b] *= inv;
	}
}
