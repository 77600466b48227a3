# backstop-filter.sieve: Dovecot Pigeonhole Sieve, "filter" form.
# Tested through dovecot-lda with Dovecot 2.3.19 and Pigeonhole 0.5.19
# (Debian 12) and with Dovecot 2.4.1 (Debian 13): the same script for both.
#
# Set up as in dovecot.conf (Dovecot 2.3) or dovecot-2.4.conf (Dovecot 2.4),
# next to this file, with the
# vnd.dovecot.filter extension and a symlink named "backstop" to
# /usr/bin/backstop in the filter program directory:
#   mkdir -p /usr/lib/dovecot/sieve-filter
#   ln -s /usr/bin/backstop /usr/lib/dovecot/sieve-filter/backstop
#
# "backstop filter" returns the whole message with two header lines added at
# the top, which stay in the stored message, for example
#   X-Backstop-Verdict: backscatter; kind=dsn; action=folder
#   X-Backstop-Reason: ownership evidence totals -3: the original was not yours (forged sender)
# "action=" is what the config (~/.config/backstop/config.yaml, "actions:")
# asks for: inbox, folder or discard.
#
# "filter" used as a test is true only when backstop succeeded; the message
# then carries backstop's own X-Backstop fields alone (filter removes any the
# message came with). If backstop fails, the message is unchanged and any
# X-Backstop field in it was written by its sender: the test is false (an
# exit status other than 0) or the script stops with an error (killed), and
# the message ends in the inbox. So rules that read X-Backstop-Verdict belong
# inside the block below; a user's own script, run after this one, sees the
# sender's fields when backstop failed.

require ["vnd.dovecot.filter", "fileinto", "mailbox"];

if filter "backstop" ["filter"]
{
  if header :contains "X-Backstop-Verdict" "action=discard"
  {
    discard;
    stop;
  }

  if header :contains "X-Backstop-Verdict" "action=folder"
  {
    fileinto :create "Backscatter";
    stop;
  }
}
