-- Argo CD health check for kondukt.io Workflow (resource.customizations.health.kondukt.io_Workflow).
-- COMPLETED: Healthy; RUNNING or not started yet: Progressing; PAUSED: Suspended;
-- FAILED, TIMED_OUT, TERMINATED: Degraded, with the workflow's own message (why it failed).
local hs = {}
local status = obj.status or {}
local phase = status.phase
local message = status.message or ""
local generation = (obj.metadata or {}).generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end
if phase == nil then
  hs.status = "Progressing"
  if message ~= "" then
    hs.message = message
  else
    hs.message = "Waiting for the operator to start the workflow"
  end
  return hs
end
if phase == "COMPLETED" then
  hs.status = "Healthy"
elseif phase == "RUNNING" then
  hs.status = "Progressing"
elseif phase == "PAUSED" then
  hs.status = "Suspended"
elseif phase == "FAILED" or phase == "TIMED_OUT" or phase == "TERMINATED" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
end
if message ~= "" then
  hs.message = phase .. ": " .. message
else
  hs.message = phase
end
return hs
