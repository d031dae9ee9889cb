/* The migrations compiled into the controller (generated from sql/). */
#ifndef CASCADE_DB_MIGRATIONS_H
#define CASCADE_DB_MIGRATIONS_H

typedef struct {
  const char *name; /* "001_init.sql"; NULL ends the table */
  const char *sql;
} db_migration_t;

extern const db_migration_t db_migrations[];

#endif
