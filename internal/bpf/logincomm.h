// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Dovecot's login processes by name (comm), for the programs that tell a
// connection before authentication from one handed to imap or pop3
// (sockets.c).

#ifndef LOGINCOMM_H
#define LOGINCOMM_H

#define COMM_LEN 16
#define MAX_COMMS 4

// The login processes' names (sockets.LoginProcesses), NUL-padded; set by
// the loader. An empty name matches nothing.
volatile const char login_comm[MAX_COMMS][COMM_LEN];

// comm must be a copy on the stack: the name loop's loads from a kernel
// pointer at a variable offset are what the verifier refuses.
static __always_inline int is_login(const char *comm)
{
	for (int n = 0; n < MAX_COMMS; n++) {
		int i;

		if (!login_comm[n][0])
			continue;
		for (i = 0; i < COMM_LEN; i++) {
			if (comm[i] != login_comm[n][i])
				break;
			if (!comm[i])
				return 1;
		}
		if (i == COMM_LEN)
			return 1;
	}
	return 0;
}

#endif
