/* `imapq user`: edits a users file (imap/server/users.h) on the machine that runs imapqd. */
#ifndef IMAPQ_CLI_USER_H
#define IMAPQ_CLI_USER_H

/* Runs `imapq user SUBCOMMAND ...`; argv[0] is "user". Returns a cli_exit status (cli.h). */
int cli_user_main(int argc, char **argv);

#endif
