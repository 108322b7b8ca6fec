/**
 * A failed run's structured error details (`errorDetails` of getRun): a budget refusal says what
 * is left, what the call needed and when the period resets, a quota refusal its limit and reset,
 * where before only the message said so, in prose. `finish_run` keeps the terminal event's
 * `errorDetails` in the new column, in the same statement that ends the run; its signature and
 * grants stay as migration 0016 made them (CREATE OR REPLACE keeps both).
 */
export function runErrorDetailsMigration(): string {
  return `
alter table brigade.runs add column error_details jsonb;

create or replace function brigade.finish_run(
  p_tenant uuid, p_user uuid, p_run uuid, p_first_seq int, p_events jsonb, p_status text,
  p_error_code text, p_error_message text, p_incomplete text, p_text text, p_terminal jsonb)
  returns jsonb language plpgsql volatile as $$
declare
  r brigade.runs;
  finished_at timestamptz := clock_timestamp();
begin
  perform set_config('brigade.tenant_id', p_tenant::text, true),
          set_config('brigade.user_id', p_user::text, true);
  update brigade.runs
     set status = p_status, completed_at = finished_at, error_code = p_error_code,
         error_message = p_error_message, incomplete_reason = p_incomplete,
         error_details = case when jsonb_typeof(p_terminal -> 'data' -> 'errorDetails') = 'object'
                              then p_terminal -> 'data' -> 'errorDetails' end
   where id = p_run and status in ('queued', 'running', 'requires_action')
     and (p_status <> 'completed' or cancel_requested_at is null)
  returning * into r;
  if not found then
    if p_status <> 'completed' then
      delete from brigade.run_queue where run_id = p_run;
    end if;
    return null;
  end if;
  if p_status = 'completed' and p_text is not null then
    insert into brigade.messages
      (tenant_id, user_id, thread_id, run_id, role, content, provenance, input_tokens,
       output_tokens, created_at)
    values (p_tenant, p_user, r.thread_id, p_run, 'assistant',
            jsonb_build_array(jsonb_build_object('type', 'text', 'text', p_text)), 'assistant',
            r.input_tokens, r.output_tokens, finished_at);
  end if;
  perform brigade.insert_run_events(p_tenant, p_user, p_run, p_first_seq,
    p_events || jsonb_build_array(jsonb_build_object(
      'type', p_terminal ->> 'type',
      'data', (p_terminal -> 'data') || jsonb_build_object('usage', jsonb_build_object(
        'inputTokens', r.input_tokens, 'outputTokens', r.output_tokens)))));
  delete from brigade.run_queue where run_id = p_run;
  return jsonb_build_object(
    'inputTokens', r.input_tokens, 'outputTokens', r.output_tokens,
    'createdAt', r.created_at, 'firstClaimedAt', r.first_claimed_at);
end $$;
`;
}
