/*-------------------------------------------------------------------------
 *
 * output.c
 *	  Everything the hokusai tool prints on stdout: tables and records for
 *	  people, JSON for scripts (one object or one array, on one line).
 *
 * Both forms are produced from query results.  In tables NULL shows as
 * "-" and timestamps lose their fractional seconds.  In JSON, booleans,
 * numbers and json/jsonb columns are written as JSON values, NULL as null,
 * timestamps as RFC 3339 strings, everything else as strings.
 *
 * src/bin/hokusai/output.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"
#include "report.h"

/* Type oids from pg_type.dat; stable across releases */
#define BOOLOID			16
#define INT8OID			20
#define INT2OID			21
#define INT4OID			23
#define JSONOID			114
#define FLOAT4OID		700
#define FLOAT8OID		701
#define TIMESTAMPTZOID	1184
#define NUMERICOID		1700
#define JSONBOID		3802

static bool json_first_field;

/* Characters on screen of a UTF-8 string */
static size_t
display_width(const char *s)
{
	size_t		w = 0;

	for (; *s; s++)
		if (((unsigned char) *s & 0xC0) != 0x80)
			w++;
	return w;
}

/*
 * A value as a person reads it.  Returns a pointer into the result or into
 * a static buffer valid until the next call.
 */
const char *
display_value(const PGresult *res, int row, int col)
{
	static char buf[64];
	const char *v;
	const char *dot;

	if (PQgetisnull(res, row, col))
		return "-";
	v = PQgetvalue(res, row, col);
	if (PQftype(res, col) == TIMESTAMPTZOID &&
		(dot = strchr(v, '.')) != NULL && strlen(v) < sizeof(buf))
	{
		size_t		n = dot - v;
		const char *rest = dot + 1;

		while (*rest >= '0' && *rest <= '9')
			rest++;
		memcpy(buf, v, n);
		strcpy(buf + n, rest);
		return buf;
	}
	return v;
}

/*
 * Selected columns as an aligned table with a header line.
 */
void
print_table(const PGresult *res, const int *cols, const char *const *headers,
			int ncols)
{
	int			nrows = PQntuples(res);
	size_t	   *width = calloc(ncols, sizeof(size_t));

	if (width == NULL)
		fail(EXIT_SERVER, "out of memory");
	for (int c = 0; c < ncols; c++)
	{
		width[c] = display_width(headers[c]);
		for (int r = 0; r < nrows; r++)
		{
			size_t		w = display_width(display_value(res, r, cols[c]));

			if (w > width[c])
				width[c] = w;
		}
	}

	for (int r = -1; r < nrows; r++)
	{
		for (int c = 0; c < ncols; c++)
		{
			const char *v = r < 0 ? headers[c] : display_value(res, r, cols[c]);

			fputs(v, stdout);
			if (c < ncols - 1)
				printf("%*s", (int) (width[c] - display_width(v) + 2), "");
		}
		putchar('\n');
	}
	free(width);
}

/*
 * One row as "column: value" lines.
 */
static void
print_record(const PGresult *res, int row)
{
	int			nfields = PQnfields(res);
	size_t		width = 0;

	for (int c = 0; c < nfields; c++)
		if (strlen(PQfname(res, c)) > width)
			width = strlen(PQfname(res, c));
	for (int c = 0; c < nfields; c++)
		printf("%-*s  %s\n", (int) width + 1, PQfname(res, c),
			   display_value(res, row, c));
}

/* A JSON string literal */
static void
json_string(const char *s)
{
	/* characters with a short escape, and their escapes in the same order */
	static const char short_escaped[] = "\"\\\n\t\r";
	static const char *const short_escapes[] = {"\\\"", "\\\\", "\\n", "\\t", "\\r"};

	putchar('"');
	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;
		const char *esc = strchr(short_escaped, ch);

		if (esc)
			fputs(short_escapes[esc - short_escaped], stdout);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/*
 * A PostgreSQL ISO timestamptz ("2024-05-01 12:00:00.5+02") as RFC 3339
 * ("2024-05-01T12:00:00.5+02:00").  Infinite values stay as they are.
 */
static void
json_timestamp(const char *v)
{
	char		buf[64];
	size_t		len = strlen(v);
	const char *sign;

	if (len < 20 || len + 4 >= sizeof(buf) || v[10] != ' ')
	{
		json_string(v);
		return;
	}
	memcpy(buf, v, len + 1);
	buf[10] = 'T';
	sign = strpbrk(buf + 19, "+-");
	if (sign && strlen(sign) == 3)
		strcat(buf, ":00");
	json_string(buf);
}

/* Open an object; its first field comes next */
static void
json_object_begin(void)
{
	putchar('{');
	json_first_field = true;
}

/* The name of the next field of the current object, after a comma if needed */
static void
json_field_name(const char *name)
{
	if (!json_first_field)
		putchar(',');
	json_first_field = false;
	json_string(name);
	putchar(':');
}

/* Every column of one row as fields of the current object */
static void
json_result_fields(const PGresult *res, int row)
{
	for (int c = 0; c < PQnfields(res); c++)
	{
		const char *v = PQgetvalue(res, row, c);

		json_field_name(PQfname(res, c));
		if (PQgetisnull(res, row, c))
		{
			fputs("null", stdout);
			continue;
		}
		switch (PQftype(res, c))
		{
			case BOOLOID:
				fputs(v[0] == 't' ? "true" : "false", stdout);
				break;
			case INT2OID:
			case INT4OID:
			case INT8OID:
			case FLOAT4OID:
			case FLOAT8OID:
			case NUMERICOID:
				/* NaN and Infinity are not JSON numbers */
				if (strspn(v, "0123456789.-+eE") == strlen(v))
					fputs(v, stdout);
				else
					json_string(v);
				break;
			case JSONOID:
			case JSONBOID:
				fputs(v, stdout);
				break;
			case TIMESTAMPTZOID:
				json_timestamp(v);
				break;
			default:
				json_string(v);
		}
	}
}

/* Row `row` of each result in res[0..nres) as the fields of one object */
static void
json_object(const PGresult *const *res, int nres, int row)
{
	json_object_begin();
	for (int i = 0; i < nres; i++)
		json_result_fields(res[i], row);
	putchar('}');
}

/*
 * Row 0 of res, and of more unless it is NULL, as one JSON object on one
 * line: the output of a command that makes or changes one thing.
 */
void
print_json_object(const PGresult *res, const PGresult *more)
{
	const PGresult *both[2] = {res, more};

	json_object(both, more ? 2 : 1, 0);
	putchar('\n');
}

/* Row 0 of res as one JSON object on one line, or as a record for people */
void
print_row(const PGresult *res, bool json)
{
	if (json)
		print_json_object(res, NULL);
	else
		print_record(res, 0);
}

/* All rows as a JSON array of objects, on one line */
void
print_json_rows(const PGresult *res)
{
	putchar('[');
	for (int r = 0; r < PQntuples(res); r++)
	{
		if (r > 0)
			putchar(',');
		json_object(&res, 1, r);
	}
	puts("]");
}

/* Fields given one by one as one JSON object on one line */
void
print_json_fields(const JsonField *fields, int nfields)
{
	json_object_begin();
	for (int i = 0; i < nfields; i++)
	{
		json_field_name(fields[i].name);
		if (fields[i].value == NULL)
			fputs("null", stdout);
		else if (fields[i].raw)
			fputs(fields[i].value, stdout);
		else
			json_string(fields[i].value);
	}
	puts("}");
}
