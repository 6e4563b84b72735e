-- Argo CD health check for kondukt.io CronWorkflow (resource.customizations.health.kondukt.io_CronWorkflow).
-- spec.suspend: Suspended; Stalled=True (its spec cannot be used, or a run was refused): Degraded with why;
-- Ready=True (scheduled): Healthy, the message saying when the next run starts; not checked yet: Progressing.
-- How its runs end shows on the Workflows it starts (kondukt.io_Workflow).
local hs = {}
local status = obj.status or {}
local generation = (obj.metadata or {}).generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule it"
  return hs
end
local ready = nil
local stalled = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" and condition.status == "True" then
    stalled = condition
  end
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
elseif obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no run starts on schedule"
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to schedule it"
end
return hs
